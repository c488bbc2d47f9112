"""Test data from the real storage service (real S3 and auth), mounted into the app under test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from sage_common.schemas import BuildDone
from sage_profiler.config import Config
from sage_profiler.service import Profiler, profile
from sage_profiler.spec import TestData
from sage_profiler.testdata import StorageHttpSource, TestDataError
from tests.fixtures.auth import MakeUser
from tests.fixtures.auth import sage_header as auth
from tests.fixtures.s3 import RunningStorage

FILES = {"set/input.txt": b"hello", "set/deep/frame.bin": bytes(range(256)) * 64}


@pytest.fixture
async def bucket(
    storage_server: RunningStorage, make_user: MakeUser, unique: str
) -> AsyncIterator[tuple[str, str]]:
    """A training-data bucket holding FILES, and its owner's token."""
    token = await make_user(f"prof{unique}")
    url = storage_server.url
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{url}/api/v1/objects", params={"type": "training-data"}, headers=auth(token)
        ) as r:
            assert r.status == 200, await r.text()
            bucket_id = str((await r.json())["id"])
        for key, body in FILES.items():
            async with http.put(
                f"{url}/api/v1/objects/{bucket_id}/{key}", data=body, headers=auth(token)
            ) as r:
                assert r.status == 200, await r.text()
    yield bucket_id, token


async def test_the_prefix_is_copied_byte_for_byte(storage_server, bucket, tmp_path: Path) -> None:
    bucket_id, token = bucket
    source = StorageHttpSource(storage_server.url, token)
    copied = await source.fetch(TestData(bucket=bucket_id, prefix="set/"), tmp_path)
    assert copied == sum(len(b) for b in FILES.values())
    assert (tmp_path / "input.txt").read_bytes() == FILES["set/input.txt"]
    assert (tmp_path / "deep/frame.bin").read_bytes() == FILES["set/deep/frame.bin"]


async def test_a_private_bucket_is_refused_to_a_stranger(
    storage_server, bucket, make_user: MakeUser, unique: str, tmp_path: Path
) -> None:
    bucket_id, _ = bucket
    stranger = await make_user(f"stranger{unique}")
    with pytest.raises(TestDataError):
        await StorageHttpSource(storage_server.url, stranger).fetch(
            TestData(bucket=bucket_id, prefix="set/"), tmp_path
        )


async def test_the_app_reads_its_test_data_from_a_read_only_mount(
    storage_server, bucket, load_image, docker_runner
) -> None:
    bucket_id, token = bucket
    profiler = Profiler(
        docker_runner, StorageHttpSource(storage_server.url, token), Config(default_repetitions=1)
    )
    testing = {"args": ["file=/data/deep/frame.bin"], "data": f"sage://{bucket_id}/set/"}
    done = await profile(
        profiler,
        BuildDone(
            app_id="t/data:1", build_id="b", status="success", image=load_image, testing=testing
        ),
    )
    missing = await profile(
        profiler,
        BuildDone(
            app_id="t/data:1",
            build_id="b2",
            status="success",
            image=load_image,
            testing={**testing, "args": ["file=/data/not-there"]},
        ),
    )
    assert done.status == "passed", done.reason
    assert missing.status == "failed" and missing.runs[0].exit_code == 4  # the file check failed
