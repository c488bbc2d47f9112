"""The ECR's in-memory store behaves as the Postgres one: the same use cases, run on each, give
the same outcomes (so the unit tests on the fake say something about the service)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import pytest

from sage_common.db import create_pool, migrate
from sage_common.events import make_event
from sage_common.schemas import AppRejected
from sage_ecr import service, service_pipeline
from sage_ecr.acl import Permission
from sage_ecr.app import MIGRATIONS
from sage_ecr.models import ListQuery, PermissionChange, RepositoryQuery, ReviewDecision
from sage_ecr.service import Ecr
from sage_ecr.store import PgStore, Store
from sage_ecr.store_memory import MemoryStore
from tests.support.ecr_memory import ALICE, BOB, REVIEWER, Given, person

PATH = ("lab", "counter", "1.0.0")


@pytest.fixture(params=["memory", "postgres"])
async def store(request: pytest.FixtureRequest, database_url: str) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    schema = f"ecr_contract_{uuid.uuid4().hex[:8]}"
    pool = await create_pool(database_url, schema, max_size=2)
    try:
        await migrate(pool, schema, MIGRATIONS)
        yield PgStore(pool)
    finally:
        await pool.close()


@pytest.fixture
def ecr(store: Store) -> Ecr:
    return Ecr(store=store)


@pytest.fixture
def given(ecr: Ecr, store: Store) -> Given:
    return Given(ecr, store)  # type: ignore[arg-type]


def grant(grantee_type: str, grantee: str, permission: str = "READ") -> PermissionChange:
    return PermissionChange(
        operation="add",
        granteeType=grantee_type,
        grantee=grantee,
        permission=Permission(permission),
    )


async def listed(ecr: Ecr, who, **query: str) -> list[str]:
    page = json.loads(await service.list_apps(ecr, who, ListQuery.model_validate(query)))
    return [app["id"] for app in page["data"]]


async def test_a_version_goes_through_the_pipeline_alike(given: Given, ecr: Ecr):
    await given.in_review()
    document = await service_pipeline.review(
        ecr, REVIEWER, *PATH, ReviewDecision(decision="approve", comment="ok")
    )

    doc = json.loads(document)
    assert (doc["state"], doc["frozen"], doc["build_number"], doc["public"]) == (
        "published",
        True,
        1,
        False,
    )
    assert doc["review"]["reviewer"] == "rita"
    assert doc["image"]["reference"] == "127.0.0.1:5000/lab/counter:1.0.0"
    assert doc["keyword_list"] == ["camera", "counting"]
    status = await service_pipeline.status(ecr, ALICE, *PATH)
    assert [(h["from"], h["to"], h["cause"], h["actor"]) for h in status["history"]] == [
        (None, "submitted", "submitted", "alice"),
        ("submitted", "building", "build.started", None),
        ("building", "profiling", "build.done", None),
        ("profiling", "in_review", "profile.done", None),
        ("in_review", "published", "review.approve", "rita"),
    ]
    assert status["build"]["status"] == "success"


async def test_the_listing_filters_alike(given: Given, ecr: Ecr):
    await given.submitted(ALICE, "lab", "counter")
    await given.submitted(ALICE, "lab", "counter", "2.0.0")
    await given.submitted(BOB, "bobs", "public-app")
    await service.change_permissions(ecr, BOB, "bobs", "public-app", grant("GROUP", "AllUsers"))
    await service.change_permissions(ecr, BOB, "bobs", "public-app", grant("USER", "alice"))

    everything = ["bobs/public-app:1.0.0", "lab/counter:1.0.0", "lab/counter:2.0.0"]
    assert await listed(ecr, None) == ["bobs/public-app:1.0.0"]
    assert await listed(ecr, ALICE) == everything
    assert await listed(ecr, REVIEWER) == everything
    assert await listed(ecr, ALICE, owner="true") == everything[1:]
    assert await listed(ecr, ALICE, nopublic="true") == everything
    assert await listed(ecr, BOB, nopublic="true") == everything[:1]
    assert await listed(ecr, person("carol"), nopublic="true") == []
    assert await listed(ecr, ALICE, public="true") == everything[:1]
    assert await listed(ecr, ALICE, shared="true") == everything[:1]
    assert await listed(ecr, ALICE, q="counting camera") == everything
    assert await listed(ecr, ALICE, q="nothing-like-it") == []
    assert await listed(ecr, ALICE, architecture="linux/arm64", gpu="true") == everything
    assert await listed(ecr, ALICE, state="registered") == []
    assert await listed(ecr, ALICE, namespace="lab", limit="1") == everything[1:2]


async def test_repositories_and_namespaces_are_listed_alike(given: Given, ecr: Ecr):
    await given.submitted(ALICE, "lab", "counter")
    await given.submitted(BOB, "bobs", "tool")
    await service.change_permissions(ecr, BOB, "bobs", "tool", grant("USER", "alice", "WRITE"))

    repos = await service.list_repositories(ecr, ALICE, RepositoryQuery(view="permissions"))
    assert [(r["namespace"], r["name"], r["public"]) for r in repos["data"]] == [
        ("bobs", "tool", False),
        ("lab", "counter", False),
    ]
    assert repos["data"][0]["permissions"] == []  # WRITE does not show the ACL
    assert [p["grantee"] for p in repos["data"][1]["permissions"]] == ["alice"]
    shared = await service.list_repositories(ecr, ALICE, RepositoryQuery(shared=True))
    assert [r["name"] for r in shared["data"]] == ["tool"]
    namespaces = await service.list_namespaces(ecr, ALICE)
    assert [(n["id"], n["owner_id"]) for n in namespaces["data"]] == [
        ("bobs", "bob"),
        ("lab", "alice"),
    ]


async def test_a_deleted_version_holds_its_names_alike(given: Given, ecr: Ecr, store: Store):
    await given.built(await given.submitted())

    await service.delete_app(ecr, ALICE, *PATH)

    async with store.read() as tx:
        assert await tx.get_app(*PATH) is None
        assert await tx.pending_deletions("lab") == 1
        assert await tx.pending_deletions("lab", "counter", "2.0.0") == 0
        assert await tx.pending_deletions("lab", "other") == 0


async def test_a_transaction_that_raises_keeps_nothing(store: Store):
    event = make_event("ecr-api", AppRejected(app_id="lab/x:1", reviewer="r"), subject="lab/x:1")

    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await tx.create_namespace("lab", "alice")
            await tx.enqueue(event)
            raise RuntimeError("the use case failed half way")

    async with store.read() as tx:
        assert await tx.get_namespace("lab") is None
        assert await tx.grants("namespace", "lab") == []
