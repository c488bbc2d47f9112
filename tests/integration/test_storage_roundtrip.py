"""Uploads and downloads through the storage service on a real S3 server and the real auth.

Sizes from 0 bytes across every part boundary, as a multipart form and as a raw body; each
comes back byte for byte with its SHA-256. One test moves 1 GiB each way from a generated
stream, never holding it in memory.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
from collections.abc import AsyncIterator

import aiohttp
import pytest

from sage_storage.service import Storage
from sage_storage.service_upkeep import sweep_once
from sage_storage.state import STORAGE
from tests.fixtures.auth import MakeUser
from tests.fixtures.auth import sage_header as auth
from tests.fixtures.s3 import RunningStorage

MiB = 1024 * 1024
PART = 8 * MiB  # the service's default part size


async def new_bucket(http: aiohttp.ClientSession, url: str, token: str) -> str:
    async with http.post(
        f"{url}/api/v1/objects", params={"type": "training-data"}, headers=auth(token)
    ) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["id"])


async def download_sha256(http: aiohttp.ClientSession, url: str, token: str) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    async with http.get(url, headers=auth(token)) as r:
        assert r.status == 200, await r.text()
        async for chunk in r.content.iter_chunked(MiB):
            digest.update(chunk)
            size += len(chunk)
        assert int(r.headers["Content-Length"]) == size
        assert r.headers["X-Checksum-SHA256"] == digest.hexdigest()
    return size, digest.hexdigest()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        yield session


@pytest.mark.parametrize("size", [0, 1, 5 * MiB - 1, PART - 1, PART, PART + 1, 2 * PART + 12345])
async def test_raw_round_trip_keeps_bytes_and_checksum(
    size: int,
    storage_server: RunningStorage,
    make_user: MakeUser,
    http: aiohttp.ClientSession,
    unique: str,
) -> None:
    token = await make_user(f"rt{unique}")
    url = storage_server.url
    bucket = await new_bucket(http, url, token)
    data = random.randbytes(size)
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    async with http.put(
        f"{url}/api/v1/objects/{bucket}/data/blob.bin",
        data=data,
        headers={**auth(token), "Content-MD5": md5},
    ) as r:
        assert r.status == 200, await r.text()
        assert await r.json() == {"bucket-id": bucket, "key": "/data/blob.bin"}
    got = await download_sha256(http, f"{url}/api/v1/objects/{bucket}/data/blob.bin", token)
    assert got == (size, hashlib.sha256(data).hexdigest())


async def test_form_upload_of_several_files_round_trips(
    storage_server: RunningStorage,
    make_user: MakeUser,
    http: aiohttp.ClientSession,
    unique: str,
) -> None:
    token = await make_user(f"form{unique}")
    url = storage_server.url
    bucket = await new_bucket(http, url, token)
    files = {"small.jpg": os.urandom(1000), "large.bin": os.urandom(PART + 7)}
    form = aiohttp.FormData()
    form.add_field("comment", "ignored: not a file part")
    for name, content in files.items():
        form.add_field("file", content, filename=name)
    async with http.put(f"{url}/api/v1/objects/{bucket}/set/", data=form, headers=auth(token)) as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["keys"] == ["/set/small.jpg", "/set/large.bin"]
    for name, content in files.items():
        got = await download_sha256(http, f"{url}/api/v1/objects/{bucket}/set/{name}", token)
        assert got == (len(content), hashlib.sha256(content).hexdigest())


async def test_blobs_in_s3_are_exactly_the_live_objects(
    storage_server: RunningStorage,
    make_user: MakeUser,
    http: aiohttp.ClientSession,
    unique: str,
) -> None:
    token = await make_user(f"s3v{unique}")
    url = storage_server.url
    bucket = await new_bucket(http, url, token)
    for body in (b"one", b"two", os.urandom(PART + 1)):  # the same key three times
        async with http.put(
            f"{url}/api/v1/objects/{bucket}/k", data=body, headers=auth(token)
        ) as r:
            assert r.status == 200
    async with http.put(f"{url}/api/v1/objects/{bucket}/gone", data=b"x", headers=auth(token)) as r:
        assert r.status == 200
    async with http.delete(f"{url}/api/v1/objects/{bucket}/gone", headers=auth(token)) as r:
        assert r.status == 200
    ctx = storage_server.app[STORAGE]
    # replaced and deleted blobs wait out a grace period for downloads under way; skip it
    assert await sweep_once(
        Storage(ctx.store, ctx.objects, ctx.config.model_copy(update={"garbage_grace_seconds": 0}))
    )
    client = storage_server.s3.client()
    blobs = [
        o.object_name
        for o in client.list_objects(
            storage_server.config.s3_bucket, prefix=f"{bucket}/", recursive=True
        )
    ]
    assert len(blobs) == 1
    assert client.stat_object(storage_server.config.s3_bucket, blobs[0]).size == PART + 1


GiB = 1024 * MiB


async def _generated(total: int, seed: int, digest: hashlib._Hash) -> AsyncIterator[bytes]:
    rng = random.Random(seed)
    block = rng.randbytes(4 * MiB)
    sent = 0
    while sent < total:
        chunk = block[: min(len(block), total - sent)]
        # vary every block cheaply so that no two parts are alike
        chunk = sent.to_bytes(8, "big") + chunk[8:] if len(chunk) >= 8 else chunk
        digest.update(chunk)
        sent += len(chunk)
        yield chunk


@pytest.mark.slow
async def test_one_gib_round_trip_from_a_generated_stream(
    storage_server: RunningStorage,
    make_user: MakeUser,
    http: aiohttp.ClientSession,
    unique: str,
) -> None:
    token = await make_user(f"gib{unique}")
    url = storage_server.url
    bucket = await new_bucket(http, url, token)
    sent = hashlib.sha256()
    async with http.put(
        f"{url}/api/v1/objects/{bucket}/one.gib", data=_generated(GiB, 7, sent), headers=auth(token)
    ) as r:
        assert r.status == 200, await r.text()
    got = await download_sha256(http, f"{url}/api/v1/objects/{bucket}/one.gib", token)
    assert got == (GiB, sent.hexdigest())
    async with http.delete(f"{url}/api/v1/objects/{bucket}", headers=auth(token)) as r:
        assert r.status == 200
