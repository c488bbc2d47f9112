"""How builds start and how the builder's and profiler's events move a version, on the fake store."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from sage_common.errors import Conflict
from sage_common.schemas import BuildDone, BuildStarted
from sage_ecr import service_builds, views
from sage_ecr.service import Ecr
from sage_ecr.store_memory import MemoryStore
from tests.support.ecr_memory import ALICE, REVIEWER, Given, person


async def history(store: MemoryStore, app_id: int) -> list[tuple[str | None, str, str]]:
    async with store.read() as tx:
        return [(h.from_state, h.to_state, h.cause) for h in await tx.history(app_id)]


async def test_an_approved_users_submission_queues_its_build_with_the_source(given: Given):
    app = await given.submitted(ALICE)

    assert (app.state, app.build_number) == ("submitted", 1)
    [event] = given.events("app.submitted")
    assert event.data["app_id"] == "lab/counter:1.0.0"
    assert event.data["build_id"] == str(app.build_id)
    assert event.data["source"]["url"] == "https://git.example.org/lab/counter.git"
    assert event.data["submitter"] == "alice"


async def test_an_unapproved_users_submission_stays_registered_and_is_not_built(given: Given):
    app = await given.submitted(person("newcomer", approved=False))

    assert (app.state, app.build_id) == ("registered", None)
    assert given.events("app.submitted") == []


async def test_a_successful_build_moves_the_version_to_profiling(given: Given, store: MemoryStore):
    app = await given.built(await given.submitted())

    assert app.state == "profiling"
    assert await history(store, app.id) == [
        (None, "submitted", "submitted"),
        ("submitted", "building", "build.started"),
        ("building", "profiling", "build.done"),
    ]


async def test_a_failed_build_stops_the_version(given: Given):
    app = await given.built(await given.submitted(), "failure", error_class="build_failed")

    assert app.state == "build_failed"


async def test_a_redelivered_build_done_changes_nothing(given: Given, store: MemoryStore):
    app = await given.submitted()
    done = BuildDone(app_id=app.ident, build_id=str(app.build_id), status="success")
    await given.event(done)
    before = await history(store, app.id)

    await given.event(done)  # the same fact again, as a redelivery carries it

    assert await history(store, app.id) == before
    assert (await given.app()).state == "profiling"


async def test_an_event_for_a_superseded_build_is_kept_but_moves_nothing(
    given: Given, ecr: Ecr, store: MemoryStore
):
    first = await given.submitted()
    async with store.transaction() as tx:
        await service_builds.rebuild(tx, first, ALICE)

    await given.event(BuildDone(app_id=first.ident, build_id=str(first.build_id), status="success"))

    async with store.read() as tx:
        old = await tx.get_build(first.build_id)
    assert old is not None and old.status == "success"
    assert (await given.app()).state == "submitted"


@pytest.mark.parametrize("build_id", ["not-a-uuid", str(uuid.uuid4())])
async def test_an_event_for_a_build_that_is_not_ours_is_ignored(given: Given, build_id: str):
    app = await given.submitted()

    await given.event(
        BuildStarted(app_id=app.ident, build_id=build_id, started_at=datetime.now(UTC))
    )

    assert (await given.app()).state == "submitted"


async def test_an_event_naming_another_version_than_its_build_is_ignored(given: Given):
    app = await given.submitted()

    await given.event(
        BuildDone(app_id="lab/other:1.0.0", build_id=str(app.build_id), status="success")
    )

    assert (await given.app()).state == "submitted"


async def test_a_passed_profile_asks_for_review_with_the_build_and_profile(given: Given):
    app = await given.in_review()

    assert app.state == "in_review"
    [event] = given.events("review.requested")
    assert event.data["build"]["state"] == "in_review"
    assert event.data["build"]["image"] == "127.0.0.1:5000/lab/counter:1.0.0"
    assert event.data["profile"]["status"] == "passed"


async def test_approval_publishes_and_freezes_the_version(given: Given, store: MemoryStore):
    app = await given.in_review()
    async with store.transaction() as tx:
        await service_builds.review(tx, app, REVIEWER, "approve", "looks good")

    published = await given.app()
    assert (published.state, published.frozen, published.reviewer) == ("published", True, "rita")
    [event] = given.events("app.published")
    assert event.data["image"] == "127.0.0.1:5000/lab/counter:1.0.0"
    assert event.data["comment"] == "looks good"


async def test_rejection_keeps_the_version_unfrozen_and_says_why(given: Given, store: MemoryStore):
    app = await given.in_review()
    async with store.transaction() as tx:
        await service_builds.review(tx, app, REVIEWER, "reject", "no tests")

    rejected = await given.app()
    assert (rejected.state, rejected.frozen) == ("rejected", False)
    assert [e.data["comment"] for e in given.events("app.rejected")] == ["no tests"]


async def test_a_version_not_in_review_cannot_be_reviewed_and_nothing_is_queued(
    given: Given, store: MemoryStore
):
    app = await given.submitted()

    with pytest.raises(Conflict, match="not in review"):
        async with store.transaction() as tx:
            await service_builds.review(tx, app, REVIEWER, "approve", "")

    assert given.events("app.published") == []


async def test_a_published_version_is_not_rebuilt(given: Given, store: MemoryStore):
    app = await given.in_review()
    async with store.transaction() as tx:
        await service_builds.review(tx, app, REVIEWER, "approve", "")

    with pytest.raises(Conflict, match="frozen"):
        async with store.transaction() as tx:
            await service_builds.rebuild(tx, await given.app(), ALICE)


async def test_a_rebuild_cancels_the_build_under_way(given: Given, store: MemoryStore):
    app = await given.submitted()
    async with store.transaction() as tx:
        number = await service_builds.rebuild(tx, app, ALICE)

    assert number == 2
    [cancel] = given.events("build.cancel")
    assert cancel.data["build_id"] == str(app.build_id)
    assert len(given.events("app.submitted")) == 2


async def test_documents_of_an_older_shape_are_recomputed(given: Given, store: MemoryStore):
    app = await given.submitted()
    async with store.transaction() as tx:
        await tx.save_doc(app.id, {"id": "stale"}, views.DOC_VERSION - 1)

    assert await service_builds.refresh_stale_docs(store) == 1

    async with store.read() as tx:
        assert '"id": "lab/counter:1.0.0"' in await tx.app_document(app.id)
    assert await service_builds.refresh_stale_docs(store) == 0
