"""Deleting a deleted version's images (`service_images.ImageDeletions`) against the in-memory
store: builds fenced first, digests a live version shares kept, running builds holding it off."""

from __future__ import annotations

from typing import cast

import asyncpg
import pytest

from sage_builder.registry_images import ImageRemover, Removal
from sage_builder.service_images import BuildStillRunning, ImageDeletions
from sage_builder.store_memory import MemoryStore
from sage_common.schemas import AppDeleted, ArchImage, BuildDone, DeletedBuild
from sage_common.work import Jobs

EVENT_ID = "6f0c1c3e-9d55-4c1b-8f0e-2a8f1b4c9d10"


def digest(char: str) -> str:
    return f"sha256:{char * 64}"


class FakeRemover(ImageRemover):
    """Deletes from a set of digests the registry holds; records what it was asked."""

    def __init__(self, *held: str) -> None:
        self.held, self.asked = set(held), list[list[str]]()

    async def remove(self, repository: str, digests: list[str]) -> Removal:
        self.asked.append(list(digests))
        return Removal(
            deleted=[d for d in digests if d in self.held],
            absent=[d for d in digests if d not in self.held],
        )


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def jobs() -> Jobs:
    return Jobs(cast(asyncpg.Pool, None), concurrency=1)


def deletions(store: MemoryStore, jobs: Jobs, remover: FakeRemover) -> ImageDeletions:
    return ImageDeletions(store, remover, jobs)


async def built(store: MemoryStore, build_id: str, app_id: str, *pushed: str) -> DeletedBuild:
    """A finished build of `app_id` that pushed an index (the first digest) and manifests."""
    images = [ArchImage(architecture=f"linux/arch{i}", digest=d) for i, d in enumerate(pushed[1:])]
    result = BuildDone(
        app_id=app_id, build_id=build_id, status="success", index_digest=pushed[0], images=images
    )
    async with store.transaction() as conn:
        await store.claim(conn, build_id, app_id)
        await store.finish(conn, result)
    return DeletedBuild(build_id=build_id, index_digest=pushed[0], images=images)


def deleted(app_id: str, *builds: DeletedBuild) -> AppDeleted:
    repository = app_id.rpartition(":")[0]
    return AppDeleted(app_id=app_id, repository=repository, requested_by="alice", builds=builds)


async def test_the_version_is_fenced_and_its_images_deleted_indexes_first(store, jobs):
    build = await built(store, "b1", "ns/app:1.0", digest("i"), digest("a"), digest("b"))
    remover = FakeRemover(digest("i"), digest("a"))
    answer = await deletions(store, jobs, remover).delete(deleted("ns/app:1.0", build), EVENT_ID)
    assert remover.asked == [[digest("i"), digest("a"), digest("b")]]
    assert (answer.deleted, answer.absent, answer.kept) == (
        [digest("i"), digest("a")],
        [digest("b")],
        [],
    )
    assert (answer.app_id, answer.deletion_id) == ("ns/app:1.0", EVENT_ID)
    assert store.locked == ["ns/app"]
    assert store.deleted == {"b1": "ns/app:1.0"}
    assert store.cancels == {"b1": "app deleted by alice"}


async def test_a_digest_a_live_version_also_pushed_is_kept(store, jobs):
    build = await built(store, "b1", "ns/app:1.0", digest("i"), digest("a"))
    await built(store, "b2", "ns/app:2.0", digest("j"), digest("a"))
    remover = FakeRemover(digest("i"), digest("a"))
    answer = await deletions(store, jobs, remover).delete(deleted("ns/app:1.0", build), EVENT_ID)
    assert answer.kept == [digest("a")]
    assert remover.asked == [[digest("i")]]


async def test_a_digest_shared_only_with_a_deleted_version_goes(store, jobs):
    first = await built(store, "b1", "ns/app:1.0", digest("i"), digest("a"))
    second = await built(store, "b2", "ns/app:2.0", digest("j"), digest("a"))
    remover = FakeRemover(digest("i"), digest("j"), digest("a"))
    await deletions(store, jobs, remover).delete(deleted("ns/app:1.0", first), EVENT_ID)
    answer = await deletions(store, jobs, remover).delete(deleted("ns/app:2.0", second), EVENT_ID)
    assert answer.deleted == [digest("j"), digest("a")]


async def test_a_build_of_the_version_still_running_is_stopped_and_the_deletion_retried(
    store, jobs
):
    async with store.transaction() as conn:
        await store.claim(conn, "b1", "ns/app:1.0")
    remover = FakeRemover()
    with jobs.register("b1", "ns/app:1.0") as job, pytest.raises(BuildStillRunning):
        await deletions(store, jobs, remover).delete(
            deleted("ns/app:1.0", DeletedBuild(build_id="b1")), EVENT_ID
        )
    assert (job.cancelled, job.reason) == (True, "app deleted by alice")
    assert store.deleted == {"b1": "ns/app:1.0"}  # fenced, though the event is retried
    assert remover.asked == []


async def test_another_version_building_holds_the_deletion_off(store, jobs):
    build = await built(store, "b1", "ns/app:1.0", digest("i"))
    async with store.transaction() as conn:
        await store.claim(conn, "b2", "ns/app:2.0")
    remover = FakeRemover(digest("i"))
    with pytest.raises(BuildStillRunning, match="ns/app"):
        await deletions(store, jobs, remover).delete(deleted("ns/app:1.0", build), EVENT_ID)
    assert remover.asked == []


async def test_a_build_known_under_another_app_is_left_alone(store, jobs):
    await built(store, "b1", "ns/other:1.0", digest("i"))
    await deletions(store, jobs, FakeRemover()).delete(
        deleted("ns/app:1.0", DeletedBuild(build_id="b1")), EVENT_ID
    )
    assert (store.deleted, store.cancels) == ({}, {})


async def test_an_app_id_outside_its_repository_is_refused(store, jobs):
    data = AppDeleted(app_id="ns/app:1.0", repository="ns/other", requested_by="alice")
    with pytest.raises(ValueError, match="not a version of ns/other"):
        await deletions(store, jobs, FakeRemover()).delete(data, EVENT_ID)
    assert store.deleted == {}


async def test_the_answer_is_queued_as_app_images_deleted(store, jobs):
    build = await built(store, "b1", "ns/app:1.0", digest("i"))
    service = deletions(store, jobs, FakeRemover(digest("i")))
    answer = await service.delete(deleted("ns/app:1.0", build), EVENT_ID)
    async with store.transaction() as conn:
        await service.answer(conn, answer)
    [event] = store.events
    assert (event.routing_key, event.subject) == ("app.images_deleted", "ns/app:1.0")
    assert event.data["deleted"] == [digest("i")]
