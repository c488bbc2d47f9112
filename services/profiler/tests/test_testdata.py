"""Fetching test data over the storage HTTP API (a stand-in server speaking its wire format)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from sage_profiler.spec import TestData
from sage_profiler.testdata import (
    StorageHttpSource,
    TestDataError,
    TestDataUnavailable,
    safe_relative,
    staged,
)

OBJECTS = {"imgs/a.jpg": b"A" * 10, "imgs/sub/b.jpg": b"B" * 20, "other/c": b"C"}


def make_app(token: str) -> web.Application:
    async def objects(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"sage {token}":
            return web.json_response({"error": "not found"}, status=404)
        bucket, path = request.match_info["bucket"], request.match_info["path"]
        if bucket == "broken":
            return web.json_response({"error": "boom"}, status=503)
        if bucket != "cam":
            return web.json_response({"error": "no such bucket"}, status=404)
        if path.endswith("/") or path == "":
            keys = sorted(k for k in OBJECTS if k.startswith(path))
            start = int(request.query.get("ContinuationToken", "0"))
            page = keys[start : start + 1]  # one per page, to exercise continuation
            more = start + 1 < len(keys)
            body = {
                "Name": bucket,
                "Prefix": path,
                "IsTruncated": more,
                "Contents": [{"Key": k[len(path) :], "Size": len(OBJECTS[k])} for k in page],
            }
            if more:
                body["NextContinuationToken"] = str(start + 1)
            return web.json_response(body)
        if path not in OBJECTS:
            return web.json_response({"error": "no such key"}, status=404)
        return web.Response(body=OBJECTS[path])

    app = web.Application()
    app.router.add_get("/api/v1/objects/{bucket}/{path:.*}", objects)
    return app


@pytest.fixture
async def server() -> AsyncIterator[str]:
    srv = TestServer(make_app("t0ken"), host="127.0.0.1")
    await srv.start_server()
    yield str(srv.make_url("")).rstrip("/")
    await srv.close()


async def test_every_object_under_the_prefix_is_copied_across_pages(
    server: str, tmp_path: Path
) -> None:
    got = await StorageHttpSource(server, "t0ken").fetch(
        TestData(bucket="cam", prefix="imgs"), tmp_path
    )
    assert got == 30
    assert (tmp_path / "a.jpg").read_bytes() == b"A" * 10
    assert (tmp_path / "sub/b.jpg").read_bytes() == b"B" * 20
    assert not (tmp_path / "c").exists()


async def test_data_over_the_size_limit_is_refused(server: str, tmp_path: Path) -> None:
    source = StorageHttpSource(server, "t0ken", max_bytes=15)
    with pytest.raises(TestDataError, match="larger than"):
        await source.fetch(TestData(bucket="cam", prefix="imgs/"), tmp_path)


async def test_missing_or_forbidden_data_is_a_profile_failure(server: str, tmp_path: Path) -> None:
    with pytest.raises(TestDataError):
        await StorageHttpSource(server, "wrong").fetch(TestData(bucket="cam"), tmp_path)
    with pytest.raises(TestDataError, match="no objects"):
        await StorageHttpSource(server, "t0ken").fetch(
            TestData(bucket="cam", prefix="zzz"), tmp_path
        )


async def test_an_unavailable_store_is_worth_retrying(server: str, tmp_path: Path) -> None:
    with pytest.raises(TestDataUnavailable):
        await StorageHttpSource(server, "t0ken").fetch(TestData(bucket="broken"), tmp_path)
    with pytest.raises(TestDataUnavailable):
        await StorageHttpSource("http://127.0.0.1:9", "t").fetch(TestData(bucket="cam"), tmp_path)


async def test_staged_data_is_readable_and_removed_afterwards(server: str, tmp_path: Path) -> None:
    source = StorageHttpSource(server, "t0ken")
    async with staged(source, TestData(bucket="cam", prefix="imgs/"), tmp_path) as root:
        assert root is not None and (root / "sub/b.jpg").stat().st_mode & 0o777 == 0o644
    assert not root.exists()


@pytest.mark.parametrize("key", ["../etc/passwd", "a/../../b", "", "/", "a/.."])
def test_keys_that_would_leave_the_directory_are_refused(key: str) -> None:
    with pytest.raises(TestDataError):
        safe_relative(key)
