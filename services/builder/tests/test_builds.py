"""The builder's use cases on the bus (`service_builds.Builds`) against the in-memory store:
a build claimed once, redeliveries resumed or passed over, rebuilds superseding, one result."""

from __future__ import annotations

from pathlib import Path

import pytest

from sage_builder.backend import FakeBackend
from sage_builder.buildlog import MemoryLogSink
from sage_builder.cache import LayerCache
from sage_builder.models import BuildRequest
from sage_builder.registry import RegistryClient
from sage_builder.service import Builder
from sage_builder.service_builds import Builds
from sage_builder.source import GitFetcher
from sage_builder.store import Store
from sage_builder.store_memory import MemoryStore
from sage_common.schemas import AppSource, AppSubmitted, BuildDone
from sage_common.work import Accepted

APP = "ns/app:1.0"


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def builds(tmp_path: Path, store: MemoryStore) -> Builds:
    builder = Builder(
        backend=FakeBackend(),
        fetcher=GitFetcher(),
        cache=LayerCache(tmp_path / "cache", 10**9),
        sink=MemoryLogSink(),
        registry="registry.test",
        registry_client=RegistryClient(
            "registry.test", token_url="http://auth.test", service="s", creds=None
        ),
        creds=None,
        work_dir=tmp_path,
        timeout=30,
    )
    return Builds(builder, store)


def submitted(build_id: str = "b1", app_id: str = APP) -> AppSubmitted:
    source = AppSource(url="https://example.org/app.git", branch="main")
    return AppSubmitted(app_id=app_id, build_id=build_id, source=source, submitter="alice")


def done(build_id: str = "b1", status: str = "success") -> BuildDone:
    return BuildDone(app_id=APP, build_id=build_id, status=status, duration_seconds=1.5)


async def accept(builds: Builds, store: MemoryStore, data: AppSubmitted) -> Accepted[BuildRequest]:
    async with store.transaction() as conn:
        return await builds.accept(conn, data)


async def record(builds: Builds, store: MemoryStore, *results: BuildDone) -> list[bool]:
    """Accept `b1` and record each of `results` as its attempts would."""
    request = (await accept(builds, store, submitted())).request
    assert request is not None
    recorded = []
    for result in results:
        async with store.transaction() as conn:
            recorded.append(await builds.record(conn, request, result))
    return recorded


async def test_a_new_build_is_claimed_and_announces_where_its_log_goes(builds, store):
    accepted = await accept(builds, store, submitted())
    assert accepted.request is not None
    assert (accepted.build_id, accepted.app_id, accepted.stop) == ("b1", APP, {})
    assert (accepted.request.url, accepted.request.submitter) == (
        "https://example.org/app.git",
        "alice",
    )
    assert store.builds["b1"].status == "running"
    [started] = store.events
    assert (started.routing_key, started.subject) == ("build.started", APP)
    assert started.data["log_location"] == "memory://builds/ns/app/1.0/b1.log"


async def test_a_redelivered_running_build_starts_over_without_a_second_build_started(
    builds, store
):
    await accept(builds, store, submitted())
    again = await accept(builds, store, submitted())
    assert again.request is not None
    assert store.builds["b1"].attempts == 2
    assert [e.routing_key for e in store.events] == ["build.started"]


async def test_a_finished_build_is_only_recorded_when_delivered_again(builds, store):
    assert await record(builds, store, done()) == [True]
    before = list(store.events)
    again = await accept(builds, store, submitted())
    assert (again.build_id, again.request) == ("b1", None)
    assert store.events == before


async def test_a_rebuild_stops_the_running_builds_of_its_version(builds, store):
    await accept(builds, store, submitted("b1"))
    await accept(builds, store, submitted("b2", app_id="ns/app:2.0"))
    rebuild = await accept(builds, store, submitted("b3"))
    assert rebuild.stop == {"b1": "superseded by build b3"}
    assert store.cancels == {"b1": "superseded by build b3"}


async def test_a_result_is_recorded_once_with_its_build_done(builds, store):
    assert await record(builds, store, done(status="failure"), done()) == [True, False]
    assert store.builds["b1"].status == "failure"
    assert store.builds["b1"].result == done(status="failure")
    finished = [e for e in store.events if e.routing_key == "build.done"]
    assert [e.data["status"] for e in finished] == ["failure"]


def test_the_fake_store_answers_every_query_of_the_real_one():
    queries = {name for cls in Store.__mro__[:-1] for name in vars(cls) if not name.startswith("_")}
    assert queries - set(vars(MemoryStore)) == set()
