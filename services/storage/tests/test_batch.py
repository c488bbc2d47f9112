"""Group commit: uploads that finish together are committed (and begun) in shared statements."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from sage_storage.batch import Batcher

from .conftest import Api


async def test_uploads_at_once_into_one_bucket_commit_in_fewer_transactions_than_uploads(
    api: Api,
) -> None:
    alice = api.tokens.add("alice")
    bucket = await api.bucket(alice)
    store = api.storage.store
    batches: list[int] = []
    run = store._commits._run

    async def counted(key: tuple[uuid.UUID, int], objs: list) -> list:  # type: ignore[type-arg]
        batches.append(len(objs))
        return await run(key, objs)

    store._commits._run = counted  # type: ignore[assignment]

    async def put(i: int) -> int:
        async with await api.put(alice, bucket["id"], f"many/{i}", bytes([i]) * (100 + i)) as r:
            return r.status

    assert await asyncio.gather(*(put(i) for i in range(60))) == [200] * 60
    assert sum(batches) == 60
    assert len(batches) < 60
    row = await store.pool.fetchrow(
        "SELECT object_count, bytes_used FROM buckets WHERE id = $1", uuid.UUID(bucket["id"])
    )
    assert (row["object_count"], row["bytes_used"]) == (60, sum(100 + i for i in range(60)))
    assert await store.pool.fetchval("SELECT count(*) FROM uploads") == 0
    async with api.client.get(
        f"/api/v1/objects/{bucket['id']}/many/?recursive", headers=api.auth(alice)
    ) as r:
        assert len((await r.json())["Contents"]) == 60


async def test_a_failed_batch_fails_each_of_its_callers_and_the_next_batch_runs() -> None:
    calls: list[list[int]] = []
    fail = True

    async def run(key: str, items: list[int]) -> list[int]:
        calls.append(items)
        await asyncio.sleep(0.01)
        if fail and 0 in items:
            raise RuntimeError("database down")
        return [i * 10 for i in items]

    batcher: Batcher[str, int, int] = Batcher(run, max_items=3)
    first = asyncio.ensure_future(batcher.submit("k", 0))
    await asyncio.sleep(0)
    rest = [asyncio.ensure_future(batcher.submit("k", i)) for i in range(1, 6)]
    with pytest.raises(RuntimeError, match="database down"):
        await first
    assert await asyncio.gather(*rest) == [10, 20, 30, 40, 50]
    assert calls == [[0], [1, 2, 3], [4, 5]]
    fail = False
    assert await batcher.submit("k", 7) == 70
