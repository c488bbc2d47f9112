"""The pipeline's use cases (rebuild, build, status, logs, profile, review, registry access) on
the fake store: who may do what, and what each answers."""

from __future__ import annotations

import pytest

from sage_common.auth import Principal
from sage_common.errors import Forbidden, NotFound, Unauthorized
from sage_ecr import service_pipeline
from sage_ecr.models import RegistryAccessQuery, ReviewDecision
from sage_ecr.service import Ecr
from sage_ecr.service_access import Policy
from tests.support.ecr_memory import ALICE, BOB, REVIEWER, Given, person

PATH = ("lab", "counter", "1.0.0")
AUTH = Principal(username="service:auth", client_id="auth")


async def test_the_owner_rebuilds_a_version_as_a_new_build(given: Given, ecr: Ecr):
    await given.built(await given.submitted())

    assert await service_pipeline.rebuild(ecr, ALICE, *PATH) == {"build_number": 2}
    assert (await given.app()).state == "submitted"


async def test_an_owner_not_yet_approved_may_not_start_a_build(given: Given, ecr: Ecr):
    newcomer = person("newcomer", approved=False)
    await given.submitted(newcomer)

    with pytest.raises(Forbidden, match="not approved"):
        await service_pipeline.rebuild(ecr, newcomer, *PATH)
    assert (await given.app()).state == "registered"


async def test_a_private_version_is_404_to_strangers_and_anonymous_callers(given: Given, ecr: Ecr):
    await given.submitted()

    with pytest.raises(NotFound):
        await service_pipeline.status(ecr, BOB, *PATH)
    with pytest.raises(NotFound):
        await service_pipeline.rebuild(ecr, None, *PATH)


async def test_status_lists_every_transition_and_why_the_build_failed(given: Given, ecr: Ecr):
    await given.built(await given.submitted(), "failure", error_class="build_failed", error="boom")

    status = await service_pipeline.status(ecr, ALICE, *PATH)

    assert (status["id"], status["state"], status["build_number"]) == (
        "lab/counter:1.0.0",
        "build_failed",
        1,
    )
    assert [h["to"] for h in status["history"]] == ["submitted", "building", "build_failed"]
    assert status["build"]["error_class"] == "build_failed"
    assert status["build"]["error"] == "boom"


async def test_the_build_view_links_the_build_and_says_it_is_running(given: Given, ecr: Ecr):
    app = await given.submitted()

    build = await service_pipeline.get_build(ecr, ALICE, *PATH, "http://127.0.0.1:8082")

    assert build["build_id"] == str(app.build_id)
    assert (build["result"], build["building"]) == (None, True)
    assert build["url"] == "http://127.0.0.1:8082/api/builds/lab/counter/1.0.0/1/"


async def test_logs_carry_the_last_lines_once_the_build_finished(given: Given, ecr: Ecr):
    app = await given.submitted()
    assert (await service_pipeline.logs(ecr, ALICE, *PATH))["finished"] is False

    await given.built(app, log_tail=["step 1", "done"])

    logs = await service_pipeline.logs(ecr, ALICE, *PATH)
    assert (logs["finished"], logs["log_tail"]) == (True, ["step 1", "done"])


async def test_the_profile_is_404_until_the_profiler_reported(given: Given, ecr: Ecr):
    await given.built(await given.submitted())
    with pytest.raises(NotFound, match="no profile yet"):
        await service_pipeline.profile(ecr, ALICE, *PATH)

    await given.in_review(ns="lab", name="other")
    profile = await service_pipeline.profile(ecr, ALICE, "lab", "other", "1.0.0")
    assert (profile["status"], profile["build_number"]) == ("passed", 1)


async def test_a_reviewer_publishes_a_version_in_review(given: Given, ecr: Ecr):
    await given.in_review()

    document = await service_pipeline.review(
        ecr, REVIEWER, *PATH, ReviewDecision(decision="approve", comment="ok")
    )

    assert '"state": "published"' in document
    assert '"frozen": true' in document


async def test_only_reviewers_review(given: Given, ecr: Ecr):
    await given.in_review()
    rejected = await service_pipeline.review(
        ecr, REVIEWER, *PATH, ReviewDecision(decision="reject", comment="")
    )
    assert '"state": "rejected"' in rejected

    with pytest.raises(Forbidden, match="only reviewers"):
        await service_pipeline.review(ecr, ALICE, *PATH, ReviewDecision(decision="approve"))


async def test_a_reviewer_may_not_review_their_own_app_unless_allowed(given: Given, store):
    await given.in_review(REVIEWER)
    decision = ReviewDecision(decision="approve")

    with pytest.raises(Forbidden, match="may not review their own"):
        await service_pipeline.review(Ecr(store=store), REVIEWER, *PATH, decision)
    allowed = Ecr(store=store, policy=Policy(allow_self_review=True))
    assert '"state": "published"' in await service_pipeline.review(
        allowed, REVIEWER, *PATH, decision
    )


@pytest.mark.parametrize(
    ("username", "actions"),
    [("alice", ["pull"]), ("bob", []), ("service:builder", ["pull", "push"]), ("", [])],
)
async def test_registry_access_follows_the_repositorys_grants(
    given: Given, ecr: Ecr, username: str, actions: list[str]
):
    await given.submitted()
    query = RegistryAccessQuery(username=username, repository="lab/counter")

    answer = await service_pipeline.registry_access(ecr, AUTH, query)

    assert answer == {"repository": "lab/counter", "username": username, "actions": actions}


async def test_registry_access_is_nothing_for_an_unknown_repository(given: Given, ecr: Ecr):
    query = RegistryAccessQuery(username="service:builder", repository="lab/none")

    assert (await service_pipeline.registry_access(ecr, AUTH, query))["actions"] == []


async def test_only_the_auth_service_asks_for_registry_access(ecr: Ecr):
    query = RegistryAccessQuery(username="alice", repository="lab/counter")

    with pytest.raises(Unauthorized):
        await service_pipeline.registry_access(ecr, None, query)
    with pytest.raises(Forbidden):
        await service_pipeline.registry_access(ecr, ALICE, query)
