"""Reviewers may not approve or reject their own apps, unless the operator allows it.

"Their own": the reviewer (or admin) submitted the version, or asked for its current build.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest

from sage_common.schemas import BuildDone, ProfileDone
from sage_ecr import service_builds
from sage_ecr.state import ECR
from tests.fixtures.auth import MakeUser, call
from tests.support.ecr import RunningEcr, app_spec, busless_config, start_ecr
from tests.support.names import sfx

APPROVE = {"decision": "approve", "comment": "fine"}


async def _ecr(database_url: str, auth_settings, **settings: object) -> RunningEcr:
    return await start_ecr(
        busless_config(database_url, auth_settings("ecr-api"), "ecr_review", **settings)
    )


@pytest.fixture(scope="module")
async def ecr(database_url: str, auth_settings) -> AsyncIterator[RunningEcr]:
    running = await _ecr(database_url, auth_settings)
    yield running
    await running.stop()


async def in_review(ecr: RunningEcr, http: aiohttp.ClientSession, token: str, ns: str) -> str:
    """Submit `ns/app:1.0.0` and move it to review as the builder's and profiler's events would."""
    status, body = await call(
        http, "POST", f"{ecr.url}/api/submit", token=token, json=app_spec(ns, "app")
    )
    assert status == 200, body
    await to_review(ecr, http, token, ns)
    return f"{ecr.url}/api/apps/{ns}/app/1.0.0/review"


async def to_review(ecr: RunningEcr, http: aiohttp.ClientSession, token: str, ns: str) -> None:
    _, build = await call(http, "GET", f"{ecr.url}/api/builds/{ns}/app/1.0.0", token=token)
    app_id, build_id = f"{ns}/app:1.0.0", build["build_id"]
    async with ecr.app[ECR].store.transaction() as tx:
        done = BuildDone(
            app_id=app_id,
            build_id=build_id,
            status="success",
            image=f"127.0.0.1:5000/{ns}/app:1.0.0",
            index_digest="sha256:" + "d" * 64,
        )
        await service_builds.on_build_done(tx, done, str(uuid.uuid4()))
        profiled = ProfileDone(app_id=app_id, build_id=build_id, profile_id="p", status="passed")
        await service_builds.on_profile_done(tx, profiled, str(uuid.uuid4()))


@pytest.mark.parametrize("role", ["reviewer", "admin"])
async def test_a_reviewer_may_not_approve_their_own_app(
    role: str, ecr: RunningEcr, http: aiohttp.ClientSession, make_user: MakeUser
) -> None:
    me = f"{role}-{sfx()}"
    token = await make_user(
        me, admin=role == "admin", groups=["reviewers"] if role == "reviewer" else []
    )
    ns = f"own{sfx()}"
    review = await in_review(ecr, http, token, ns)
    status, body = await call(http, "POST", review, token=token, json=APPROVE)
    assert status == 403
    assert body["detail"] == (
        f"{me} submitted {ns}/app:1.0.0: reviewers may not review their own apps;"
        " ask another reviewer"
    )
    other = await make_user(f"other-reviewer-{sfx()}", groups=["reviewers"])
    status, body = await call(http, "POST", review, token=other, json=APPROVE)
    assert status == 200 and body["state"] == "published"


async def test_a_reviewer_who_asked_for_the_build_may_not_review_it(
    ecr: RunningEcr, http: aiohttp.ClientSession, make_user: MakeUser
) -> None:
    owner = await make_user(f"owner-{sfx()}")
    me = f"reviewer-{sfx()}"
    reviewer = await make_user(me, groups=["reviewers"])
    ns = f"rebuilt{sfx()}"
    review = await in_review(ecr, http, owner, ns)
    grant = {"operation": "add", "granteeType": "USER", "grantee": me, "permission": "WRITE"}
    status, _ = await call(
        http, "PUT", f"{ecr.url}/api/permissions/{ns}/app", token=owner, json=grant
    )
    assert status == 200
    status, _ = await call(http, "POST", f"{ecr.url}/api/builds/{ns}/app/1.0.0", token=reviewer)
    assert status == 200
    await to_review(ecr, http, owner, ns)
    status, body = await call(http, "POST", review, token=reviewer, json={"decision": "reject"})
    assert status == 403 and "may not review their own apps" in body["detail"]


async def test_the_operator_may_allow_self_review(
    database_url: str, auth_settings, http: aiohttp.ClientSession, make_user: MakeUser
) -> None:
    ecr = await _ecr(database_url, auth_settings, allow_self_review=True)
    try:
        token = await make_user(f"solo-{sfx()}", groups=["reviewers"])
        review = await in_review(ecr, http, token, f"solo{sfx()}")
        status, body = await call(http, "POST", review, token=token, json=APPROVE)
        assert status == 200 and body["state"] == "published"
    finally:
        await ecr.stop()
