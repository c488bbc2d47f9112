"""Failures half way, on the real S3 server and auth: nothing half-written, nothing orphaned.

A client that disconnects mid-body leaves no object, no blob and no open multipart upload. An S3
server killed mid-transfer gives a clear 503 with Retry-After; once it is back, the sweeper
clears what could not be cleared, and the same upload works.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
from minio.error import MinioException

from sage_storage.service import Storage
from sage_storage.service_upkeep import sweep_once
from sage_storage.state import STORAGE
from tests.fixtures.auth import MakeUser
from tests.fixtures.auth import sage_header as auth
from tests.fixtures.s3 import RunningStorage
from tests.support.bus import eventually

MiB = 1024 * 1024


async def new_bucket(url: str, token: str) -> str:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{url}/api/v1/objects", params={"type": "model"}, headers=auth(token)) as r,
    ):
        assert r.status == 200
        return str((await r.json())["id"])


def blobs_under(server: RunningStorage, bucket: str) -> list[str]:
    client = server.s3.client()
    return [
        o.object_name
        for o in client.list_objects(server.config.s3_bucket, prefix=f"{bucket}/", recursive=True)
    ]


def upload_open(server: RunningStorage, blob: str, upload_id: str) -> bool:
    try:
        server.s3.client()._list_parts(server.config.s3_bucket, blob, upload_id)
    except MinioException as exc:
        assert "NoSuchUpload" in str(exc)
        return False
    return True


async def test_client_disconnect_mid_body_leaves_no_object_blob_or_parts(
    storage_server: RunningStorage,
    make_user: MakeUser,
    unique: str,
) -> None:
    token = await make_user(f"cut{unique}")
    bucket = await new_bucket(storage_server.url, token)
    ctx: Storage = storage_server.app[STORAGE]
    port = int(storage_server.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"PUT /api/v1/objects/{bucket}/cut.bin HTTP/1.1\r\nHost: storage\r\n"
        f"Authorization: sage {token}\r\nContent-Length: {64 * MiB}\r\n\r\n".encode()
    )
    for _ in range(24):
        writer.write(os.urandom(MiB))
        await writer.drain()

    async def multipart_started() -> bool:
        rows = await ctx.store.uploads_of(uuid.UUID(bucket))
        return bool(rows) and rows[0]["upload_id"] is not None

    await eventually(multipart_started, within=20)
    row = (await ctx.store.uploads_of(uuid.UUID(bucket)))[0]
    assert upload_open(storage_server, row["blob"], row["upload_id"])
    writer.transport.abort()  # the client goes away mid-body

    async def cleaned() -> bool:
        return not await ctx.store.uploads_of(uuid.UUID(bucket))

    await eventually(cleaned, within=20)
    assert not upload_open(storage_server, row["blob"], row["upload_id"])
    assert blobs_under(storage_server, bucket) == []
    async with (
        aiohttp.ClientSession() as http,
        http.head(
            f"{storage_server.url}/api/v1/objects/{bucket}/cut.bin", headers=auth(token)
        ) as r,
    ):
        assert r.status == 404


@pytest.fixture
async def private_storage(make_private_storage) -> RunningStorage:
    """A storage service on its own S3 server and schema, free to be broken."""
    return await make_private_storage(drain_seconds=30)


async def test_s3_killed_mid_transfer_is_503_then_cleaned_and_working_again(
    private_storage: RunningStorage,
    make_user: MakeUser,
    unique: str,
) -> None:
    server, s3 = private_storage, private_storage.s3
    token = await make_user(f"s3down{unique}")
    bucket = await new_bucket(server.url, token)
    url = f"{server.url}/api/v1/objects/{bucket}/data.bin"

    async def body() -> AsyncIterator[bytes]:
        for i in range(48):
            if i == 20:
                await asyncio.to_thread(s3.stop)
            yield os.urandom(MiB)

    async with aiohttp.ClientSession() as http:
        async with http.put(url, data=body(), headers=auth(token)) as r:
            assert r.status == 503
            assert int(r.headers["Retry-After"]) > 0
            assert "object store" in (await r.json())["error"]
        async with http.head(url, headers=auth(token)) as r:
            assert r.status == 404  # nothing half-written
        async with http.get(f"{server.url}/readyz") as r:
            assert r.status == 503

        ctx: Storage = server.app[STORAGE]
        left = await ctx.store.uploads_of(uuid.UUID(bucket))
        assert [r["state"] for r in left] == ["aborting"]  # S3 was down: the sweeper's job
        await asyncio.to_thread(s3.start)
        assert await sweep_once(ctx)
        assert await ctx.store.uploads_of(uuid.UUID(bucket)) == []
        assert blobs_under(server, bucket) == []

        data = os.urandom(20 * MiB + 3)
        async with http.put(url, data=data, headers=auth(token)) as r:
            assert r.status == 200, await r.text()
        async with http.get(url, headers=auth(token)) as r:
            assert hashlib.sha256(await r.read()).digest() == hashlib.sha256(data).digest()


async def test_s3_down_reads_are_503_and_listings_still_work(
    private_storage: RunningStorage,
    make_user: MakeUser,
    unique: str,
) -> None:
    server = private_storage
    token = await make_user(f"s3read{unique}")
    bucket = await new_bucket(server.url, token)
    url = f"{server.url}/api/v1/objects/{bucket}"
    async with aiohttp.ClientSession() as http:
        async with http.put(f"{url}/k", data=b"kept", headers=auth(token)) as r:
            assert r.status == 200
        await asyncio.to_thread(server.s3.stop)
        async with http.get(f"{url}/k", headers=auth(token)) as r:
            assert r.status == 503 and r.headers["Retry-After"]
        async with http.get(f"{url}/", headers=auth(token)) as r:
            assert r.status == 200
            assert [c["Key"] for c in (await r.json())["Contents"]] == ["k"]
        async with http.delete(url, headers=auth(token)) as r:
            assert r.status == 503  # the delete stops; the bucket is hidden, resumable
        async with http.get(url, headers=auth(token)) as r:
            assert r.status == 404
        await asyncio.to_thread(server.s3.start)
        async with http.delete(url, headers=auth(token)) as r:
            assert r.status == 200, await r.text()
    assert blobs_under(server, bucket) == []


async def test_postgres_unusable_is_503_with_retry_after(
    private_storage: RunningStorage,
    make_user: MakeUser,
    unique: str,
) -> None:
    from sage_common.web import POOL

    token = await make_user(f"pgdown{unique}")
    bucket = await new_bucket(private_storage.url, token)
    await private_storage.app[POOL].close()
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{private_storage.url}/api/v1/objects/{bucket}", headers=auth(token)) as r,
    ):
        assert r.status == 503
        assert r.headers["Retry-After"]
