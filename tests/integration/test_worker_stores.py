"""The builder's and profiler's stores on a real Postgres and their in-memory fakes give the
same answers to the same calls: what unit tests learn from a fake holds for the real store."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest

from sage_builder.app import MIGRATIONS as BUILDER_MIGRATIONS
from sage_builder.store import Store as BuildStore
from sage_builder.store_memory import MemoryStore as MemoryBuildStore
from sage_common import db
from sage_common.events import make_event
from sage_common.schemas import AppImagesDeleted, ArchImage, BuildDone, ProfileDone
from sage_common.work import cancel_reasons
from sage_profiler.app import MIGRATIONS as PROFILER_MIGRATIONS
from sage_profiler.store import Store as ProfileStore
from sage_profiler.store_memory import MemoryStore as MemoryProfileStore
from tests.support.names import sfx

EVENT_ID = "6f0c1c3e-9d55-4c1b-8f0e-2a8f1b4c9d10"
Transaction = Callable[[], contextlib.AbstractAsyncContextManager[asyncpg.Connection]]


def digest(char: str) -> str:
    return f"sha256:{char * 64}"


@pytest.fixture(params=["postgres", "memory"])
async def builds(request, database_url) -> AsyncIterator[BuildStore]:
    if request.param == "memory":
        yield MemoryBuildStore()
        return
    schema = f"builder_store_{sfx()}"
    pool = await db.create_pool(database_url, schema, max_size=2)
    await db.migrate(pool, schema, BUILDER_MIGRATIONS)
    yield BuildStore(pool)
    await pool.execute(f"DROP SCHEMA {schema} CASCADE")
    await pool.close()


async def cancels(store: BuildStore, build_ids: list[str]) -> dict[str, str]:
    if isinstance(store, MemoryBuildStore):
        return {b: r for b, r in store.cancels.items() if b in build_ids}
    async with store.transaction() as conn:
        return await cancel_reasons(conn, build_ids)


async def finish(store: BuildStore, build_id: str, app_id: str, *pushed: str) -> None:
    """Claim and finish a successful build that pushed an index (first) and manifests."""
    images = [ArchImage(architecture=f"linux/a{i}", digest=d) for i, d in enumerate(pushed[1:])]
    done = BuildDone(
        app_id=app_id, build_id=build_id, status="success", index_digest=pushed[0], images=images
    )
    async with store.transaction() as conn:
        await store.claim(conn, build_id, app_id)
    async with store.transaction() as conn:
        assert await store.finish(conn, done)


async def test_a_build_is_claimed_resumed_and_finished_once(builds):
    async with builds.transaction() as conn:
        claims = [await builds.claim(conn, "b1", "ns/app:1.0") for _ in range(2)]
        done = BuildDone(app_id="ns/app:1.0", build_id="b1", status="failure")
        finished = [await builds.finish(conn, done) for _ in range(2)]
        claims.append(await builds.claim(conn, "b1", "ns/app:1.0"))
    assert claims == ["new", "resumed", "finished"]
    assert finished == [True, False]


async def test_a_transaction_that_fails_leaves_nothing_behind(builds):
    with pytest.raises(ZeroDivisionError):
        async with builds.transaction() as conn:
            await builds.claim(conn, "b1", "ns/app:1.0")
            raise ZeroDivisionError
    async with builds.transaction() as conn:
        assert await builds.claim(conn, "b1", "ns/app:1.0") == "new"


async def test_a_rebuild_supersedes_only_the_running_builds_of_its_app(builds):
    await finish(builds, "b0", "ns/app:1.0", digest("i"))
    async with builds.transaction() as conn:
        for build_id, app_id in [("b1", "ns/app:1.0"), ("b2", "ns/app:2.0"), ("b3", "ns/app:1.0")]:
            await builds.claim(conn, build_id, app_id)
        assert await builds.supersede(conn, "ns/app:1.0", "b3") == ["b1"]
    assert await cancels(builds, ["b0", "b1", "b2", "b3"]) == {"b1": "superseded by build b3"}


async def test_a_deleted_version_is_fenced_and_keeps_only_what_live_versions_share(builds):
    await finish(builds, "b1", "ns/app:1.0", digest("i"), digest("a"), digest("b"))
    await finish(builds, "b2", "ns/app:2.0", digest("j"), digest("a"))
    await finish(builds, "b3", "ns/app:3.0", digest("k"), digest("b"))
    await finish(builds, "x1", "ns/other:1.0", digest("x"))
    async with builds.transaction() as conn:
        await builds.claim(conn, "b4", "ns/app:4.0")
        await builds.lock_repository(conn, "ns/app")
        await builds.fence(conn, "ns/app:3.0", ["b3"], EVENT_ID, "alice")
        await builds.fence(conn, "ns/app:1.0", ["b1", "x1", "gone"], EVENT_ID, "alice")
        assert await builds.running(conn, ["b1", "b4", "gone"]) == ["b4"]
        assert await builds.building_in(conn, "ns/app", "ns/app:1.0") == ["ns/app:4.0"]
        pushed = await builds.pushed(conn, "ns/app:1.0", ["b1", "b2", "x1"])
        assert (pushed.indexes, pushed.manifests) == ((digest("i"),), (digest("a"), digest("b")))
        digests = [digest("i"), digest("a"), digest("b")]
        assert await builds.in_use(conn, "ns/app", "ns/app:1.0", digests) == [digest("a")]
    reason = "app deleted by alice"
    assert await cancels(builds, ["b1", "b3", "x1", "gone"]) == {
        "b1": reason,
        "b3": reason,
        "gone": reason,
    }


async def test_a_deleted_version_no_longer_holds_others_off(builds):
    async with builds.transaction() as conn:
        await builds.claim(conn, "b2", "ns/app:2.0")
        await builds.fence(conn, "ns/app:2.0", ["b2"], EVENT_ID, "alice")
        assert await builds.building_in(conn, "ns/app", "ns/app:1.0") == []


async def test_events_are_queued_only_in_a_transaction(builds):
    event = make_event("test", AppImagesDeleted(app_id="ns/app:1.0", deletion_id=EVENT_ID))
    async with builds.transaction() as conn:
        await builds.enqueue(conn, event)
    if isinstance(builds, MemoryBuildStore):
        assert builds.events == [event]
        with pytest.raises(RuntimeError, match="inside the transaction"):
            await builds.enqueue(conn, event)
        return
    async with builds.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 1
        with pytest.raises(RuntimeError, match="inside the transaction"):
            await builds.enqueue(conn, event)


@pytest.fixture(params=["postgres", "memory"])
async def profiles(request, database_url) -> AsyncIterator[tuple[ProfileStore, Transaction]]:
    if request.param == "memory":
        store = MemoryProfileStore()
        yield store, store.transaction
        return
    schema = f"profiler_store_{sfx()}"
    pool = await db.create_pool(database_url, schema, max_size=2)
    await db.migrate(pool, schema, PROFILER_MIGRATIONS)

    @contextlib.asynccontextmanager
    async def transaction() -> AsyncIterator[asyncpg.Connection]:
        async with pool.acquire() as conn, conn.transaction():
            yield conn

    yield ProfileStore(), transaction
    await pool.execute(f"DROP SCHEMA {schema} CASCADE")
    await pool.close()


async def test_a_build_keeps_its_first_profile(profiles):
    store, transaction = profiles
    first = ProfileDone(app_id="ns/app:1.0", build_id="b1", profile_id=EVENT_ID, status="passed")
    async with transaction() as conn:
        before = await store.has_profile(conn, "b1")
        saved = [await store.save_profile(conn, p) for p in (first, first.model_copy())]
        after = await store.has_profile(conn, "b1"), await store.has_profile(conn, "b2")
    assert (before, saved, after) == (False, [True, False], (True, False))
