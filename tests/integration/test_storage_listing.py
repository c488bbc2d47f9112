"""Listing 10,000 objects page by page, on real S3 and auth: every key once, in order."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.fixtures.auth import MakeUser
from tests.fixtures.s3 import RunningStorage

COUNT = 10_000
FOLDERS = 10


def key_of(i: int) -> str:
    return f"set/{i % FOLDERS}/img{i:05d}.jpg"


@pytest.fixture(scope="module")
async def filled(
    storage_server: RunningStorage, make_user: MakeUser
) -> AsyncIterator[tuple[str, str, str]]:
    """A bucket with 10,000 small objects uploaded through the service, 32 at a time."""
    token = await make_user(f"lister-{uuid.uuid4().hex[:8]}")
    url = storage_server.url
    headers = {"Authorization": f"sage {token}"}
    connector = aiohttp.TCPConnector(limit=32)
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.post(
            f"{url}/api/v1/objects", params={"type": "training-data"}, headers=headers
        ) as r:
            bucket = (await r.json())["id"]
        todo = iter(range(COUNT))

        async def worker() -> None:
            for i in todo:
                async with http.put(
                    f"{url}/api/v1/objects/{bucket}/{key_of(i)}",
                    data=str(i).encode(),
                    headers=headers,
                ) as r:
                    assert r.status == 200, await r.text()

        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(32)))
        print(f"uploaded {COUNT} objects in {time.monotonic() - start:.1f} s")
    yield url, bucket, token


async def _pages(
    url: str, bucket: str, token: str, prefix: str, **query: str
) -> list[dict[str, Any]]:
    pages: list[dict[str, Any]] = []
    sent: str | None = None
    async with aiohttp.ClientSession() as http:
        while True:
            params = dict(query, **({"ContinuationToken": sent} if sent else {}))
            async with http.get(
                f"{url}/api/v1/objects/{bucket}/{prefix}",
                params=params,
                headers={"Authorization": f"sage {token}"},
            ) as r:
                assert r.status == 200, await r.text()
                page = await r.json()
            pages.append(page)
            if not page["IsTruncated"]:
                assert page["NextContinuationToken"] is None
                return pages
            assert page["NextContinuationToken"] and page["NextContinuationToken"] != sent
            sent = page["NextContinuationToken"]


@pytest.mark.slow
async def test_recursive_listing_pages_through_every_key_once_in_order(
    filled: tuple[str, str, str],
) -> None:
    pages = await _pages(*filled, "", recursive="true", limit="1000")
    keys = [c["Key"] for p in pages for c in p["Contents"]]
    assert len(pages) == 10 and all(len(p["Contents"]) == 1000 for p in pages)
    assert keys == sorted(key_of(i) for i in range(COUNT))
    tokens = [p["NextContinuationToken"] for p in pages[:-1]]
    assert len(set(tokens)) == len(tokens)


@pytest.mark.slow
async def test_folder_listing_pages_with_relative_keys_and_folders(
    filled: tuple[str, str, str],
) -> None:
    url, bucket, token = filled
    top = await _pages(url, bucket, token, "set/")
    assert [p["Prefix"] for p in top[0]["CommonPrefixes"]] == [f"{d}/" for d in range(FOLDERS)]
    assert top[0]["Contents"] == []
    pages = await _pages(url, bucket, token, "set/3/", limit="300")
    keys = [c["Key"] for p in pages for c in p["Contents"]]
    assert len(pages) == 4 and pages[0]["Prefix"] == "/set/3/"
    assert keys == sorted(key_of(i).removeprefix("set/3/") for i in range(3, COUNT, FOLDERS))
    assert all(c["Size"] == len(str(int(c["Key"][3:8]))) for p in pages for c in p["Contents"])
    mixed = await _pages(url, bucket, token, "set/", limit="3")
    assert [p["Prefix"] for page in mixed for p in page["CommonPrefixes"]] == [
        f"{d}/" for d in range(FOLDERS)
    ]
