"""The profiler's use cases on the bus (`service_profiles.Profiles`) against the in-memory
store: only successful builds not yet profiled are profiled, a cancel leaves no profile, and a
profile is kept once with its `profile.done`."""

from __future__ import annotations

import asyncio

import pytest

from sage_common.schemas import BuildDone
from sage_common.work import Job
from sage_profiler.config import Config
from sage_profiler.fakes import FakeDataSource, FakeRunner
from sage_profiler.runner import RunResult, RunSpec
from sage_profiler.service import Profiler, profile_id_for
from sage_profiler.service_profiles import Profiles
from sage_profiler.store import Store
from sage_profiler.store_memory import MemoryStore

APP = "ns/app:1.0.0"


class CancelledMidRun(FakeRunner):
    """A run that never ends: the build is cancelled while it runs."""

    def __init__(self, job: Job) -> None:
        super().__init__()
        self.job = job

    async def run(self, spec: RunSpec) -> RunResult:
        self.runs.append(spec)
        self.job.request_cancel("superseded by build b-2")
        await asyncio.Event().wait()
        raise AssertionError("a cancelled run goes on")


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def profiles(store: MemoryStore, runner: FakeRunner | None = None) -> Profiles:
    profiler = Profiler(runner or FakeRunner(), FakeDataSource(), Config())
    return Profiles(profiler, store, source="sage-profiler")


def build(status: str = "success", build_id: str = "b-1") -> BuildDone:
    return BuildDone(
        app_id=APP, build_id=build_id, status=status, image="127.0.0.1:5000/ns/app:1.0.0"
    )


async def accepted(store: MemoryStore, data: BuildDone) -> BuildDone | None:
    async with store.transaction() as conn:
        return (await profiles(store).accept(conn, data)).request


async def test_a_successful_build_not_yet_profiled_is_accepted(store):
    assert await accepted(store, build()) == build()


async def test_a_failed_build_is_only_recorded(store):
    assert await accepted(store, build("failure")) is None


async def test_a_build_profiled_already_is_passed_over(store):
    worker = profiles(store)
    done = await worker.perform(build(), Job("b-1", APP))
    assert done is not None
    async with store.transaction() as conn:
        assert await worker.record(conn, build(), done)
    assert await accepted(store, build()) is None
    assert await accepted(store, build(build_id="b-2")) == build(build_id="b-2")


async def test_a_profile_is_kept_once_with_its_profile_done(store):
    worker = profiles(store)
    first = await worker.perform(build(), Job("b-1", APP))
    again = await worker.perform(build(), Job("b-1", APP))  # a redelivered attempt
    assert first is not None and again is not None
    assert first.profile_id == again.profile_id == profile_id_for("b-1")
    recorded = []
    for result in (first, again):
        async with store.transaction() as conn:
            recorded.append(await worker.record(conn, build(), result))
    assert recorded == [True, False]
    assert store.profiles == {"b-1": first}
    [event] = store.events
    assert (event.routing_key, event.subject) == ("profile.done", APP)
    assert event.data["profile_id"] == first.profile_id


async def test_a_build_cancelled_before_its_profile_gets_none(store):
    runner = FakeRunner()
    job = Job("b-1", APP)
    job.request_cancel("superseded by build b-2")
    assert await profiles(store, runner).perform(build(), job) is None
    assert runner.runs == []


async def test_a_build_cancelled_while_profiled_gets_none(store):
    job = Job("b-1", APP)
    runner = CancelledMidRun(job)
    assert await profiles(store, runner).perform(build(), job) is None
    assert len(runner.runs) == 1


def test_the_fake_store_answers_every_query_of_the_real_one():
    queries = {name for name in vars(Store) if not name.startswith("_")}
    assert queries - set(vars(MemoryStore)) == set()
