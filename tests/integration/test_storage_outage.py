"""Storage through an S3 outage with uploads in flight: every answer is 200 or 503 with
Retry-After (never 500), readiness is 503 while S3 is down and 200 after, and once S3 is back the
sweeper leaves no blob that no object points at, counting what it swept.

The S3 server is a private one that the test kills mid-upload.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client import REGISTRY

from sage_storage.service import Storage
from sage_storage.service_upkeep import sweep_once
from sage_storage.state import STORAGE
from tests.fixtures.auth import MakeUser
from tests.fixtures.auth import sage_header as auth
from tests.fixtures.s3 import RunningStorage
from tests.support.bus import eventually

MiB = 1024 * 1024


@pytest.fixture
async def storage(make_private_storage) -> RunningStorage:
    return await make_private_storage(garbage_grace_seconds=0)


def swept(kind: str) -> float:
    return REGISTRY.get_sample_value("sage_storage_swept_total", {"kind": kind}) or 0.0


async def test_uploads_during_s3_outage_are_503_never_500_and_leave_no_orphan_blob(
    storage: RunningStorage, make_user: MakeUser, unique: str
) -> None:
    token = await make_user(f"s3out{unique}")
    s3 = storage.s3
    ctx: Storage = storage.app[STORAGE]
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{storage.url}/api/v1/objects", params={"type": "model"}, headers=auth(token)
        ) as r:
            bucket = str((await r.json())["id"])
        stop = asyncio.Event()

        async def body(size: int, held: bool) -> AsyncIterator[bytes]:
            for i in range(size):
                if i == 2 and held:
                    await stop.wait()  # under way when S3 dies, and going on after
                yield os.urandom(MiB)
                await asyncio.sleep(0.01)

        async def put(n: int) -> tuple[int, str | None, str]:
            url = f"{storage.url}/api/v1/objects/{bucket}/f{n}.bin"
            data = body(1 + n * 3, held=n % 2 == 0)
            async with http.put(url, data=data, headers=auth(token)) as r:
                return r.status, r.headers.get("Retry-After"), await r.text()

        uploads = [asyncio.create_task(put(n)) for n in range(12)]
        await asyncio.sleep(0.6)
        await asyncio.to_thread(s3.stop)
        stop.set()
        answers = await asyncio.gather(*uploads)
        async with http.get(f"{storage.url}/readyz") as r:
            assert r.status == 503

        statuses = [status for status, _, _ in answers]
        assert set(statuses) <= {200, 503}, answers
        assert 503 in statuses
        assert all(retry and int(retry) > 0 for status, retry, _ in answers if status == 503)

        before = swept("upload")
        await asyncio.to_thread(s3.start)
        back = time.monotonic()

        async def ready() -> bool:
            async with http.get(f"{storage.url}/readyz") as r:
                return r.status == 200

        await eventually(ready, within=30)
        to_ready = time.monotonic() - back
        assert await sweep_once(ctx)
        print(
            f"\nS3 restart: ready after {to_ready:.2f} s, swept after {time.monotonic() - back:.2f} s"
        )

    left = await ctx.store.uploads_of(uuid.UUID(bucket))
    assert left == []
    rows = await ctx.store.pool.fetch(
        "SELECT blob FROM objects WHERE bucket_id = $1", uuid.UUID(bucket)
    )
    referenced = {r["blob"] for r in rows}
    stored = {
        o.object_name
        for o in s3.client().list_objects(
            storage.config.s3_bucket, prefix=f"{bucket}/", recursive=True
        )
    }
    assert stored == referenced  # no orphan blob, no object without its blob
    assert len(referenced) == statuses.count(200)
    assert swept("upload") > before
