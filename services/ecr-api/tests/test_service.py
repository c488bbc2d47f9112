"""The catalogue's use cases (versions, listings, namespaces, repositories, permissions) on the
fake store."""

from __future__ import annotations

import json
import uuid

import pytest

from sage_common.errors import Conflict, Forbidden, NotFound, Unauthorized
from sage_common.schemas import AppImagesDeleted
from sage_ecr import service, service_images
from sage_ecr.acl import Permission
from sage_ecr.models import ListQuery, NamespaceCreate, PermissionChange, RepositoryQuery
from sage_ecr.service import Ecr
from sage_ecr.store_memory import MemoryStore
from tests.support.ecr_memory import ADMIN, ALICE, BOB, REVIEWER, Given

PATH = ("lab", "counter", "1.0.0")


def share(with_: str = "bob", permission: str = "READ") -> PermissionChange:
    return PermissionChange(
        operation="add", granteeType="USER", grantee=with_, permission=Permission(permission)
    )


def make_public() -> PermissionChange:
    return PermissionChange(
        operation="add", granteeType="GROUP", grantee="AllUsers", permission=Permission.READ
    )


async def listed(ecr: Ecr, who, **query: str) -> list[str]:
    page = json.loads(await service.list_apps(ecr, who, ListQuery.model_validate(query)))
    return [app["id"] for app in page["data"]]


async def test_a_version_shows_its_document_to_the_owner_only(given: Given, ecr: Ecr):
    await given.submitted()

    doc = json.loads(await service.get_app(ecr, ALICE, *PATH))

    assert (doc["id"], doc["owner"], doc["public"]) == ("lab/counter:1.0.0", "alice", False)
    with pytest.raises(NotFound):
        await service.get_app(ecr, BOB, *PATH)


async def test_sharing_a_repository_lets_that_user_read_its_versions(given: Given, ecr: Ecr):
    await given.submitted()

    assert await service.change_permissions(ecr, ALICE, "lab", "counter", share()) == {"added": 1}

    assert json.loads(await service.get_app(ecr, BOB, *PATH))["id"] == "lab/counter:1.0.0"
    with pytest.raises(Forbidden):
        await service.delete_app(ecr, BOB, *PATH)


async def test_deleting_a_version_queues_its_images_deletion_and_holds_its_names(
    given: Given, ecr: Ecr, store: MemoryStore
):
    await given.built(await given.submitted())

    assert await service.delete_app(ecr, ALICE, *PATH) == {"deleted": 1}

    [deleted] = given.events("app.deleted")
    assert deleted.data["builds"][0]["image"] == "127.0.0.1:5000/lab/counter:1.0.0"
    with pytest.raises(NotFound):
        await service.get_app(ecr, ALICE, *PATH)
    with pytest.raises(Conflict, match="still being removed"):
        await given.submitted()

    answer = AppImagesDeleted(app_id="lab/counter:1.0.0", deletion_id=deleted.id)
    async with store.transaction() as tx:
        await service_images.on_images_deleted(tx, answer)
    assert (await given.submitted()).state == "submitted"


async def test_a_confirmation_naming_no_deletion_of_ours_frees_nothing(
    given: Given, ecr: Ecr, store: MemoryStore
):
    await given.submitted()
    await service.delete_app(ecr, ALICE, *PATH)

    for deletion_id in ("not-a-uuid", str(uuid.uuid4())):
        answer = AppImagesDeleted(app_id="lab/counter:1.0.0", deletion_id=deletion_id)
        async with store.transaction() as tx:
            await service_images.on_images_deleted(tx, answer)

    with pytest.raises(Conflict):
        await given.submitted()


async def test_a_frozen_version_is_deleted_only_by_an_administrator(given: Given, ecr: Ecr):
    await given.submitted()
    assert await service.set_frozen(ecr, ADMIN, *PATH, True) == {"modified": 1}
    assert await service.set_frozen(ecr, ADMIN, *PATH, True) == {"modified": 0}

    with pytest.raises(Forbidden, match="frozen"):
        await service.delete_app(ecr, ALICE, *PATH)
    assert await service.delete_app(ecr, ADMIN, *PATH) == {"deleted": 1}


@pytest.mark.parametrize(("who", "error"), [(None, Unauthorized), (ALICE, Forbidden)])
async def test_only_administrators_freeze(given: Given, ecr: Ecr, who, error):
    await given.submitted()
    await service.change_permissions(ecr, ALICE, "lab", "counter", make_public())

    with pytest.raises(error):
        await service.set_frozen(ecr, who, *PATH, True)
    assert (await given.app()).frozen is False


async def test_the_listing_shows_what_each_caller_may_read(given: Given, ecr: Ecr):
    await given.submitted(ALICE, "lab", "counter")
    await given.submitted(BOB, "bobs", "public-app")
    await service.change_permissions(ecr, BOB, "bobs", "public-app", make_public())

    assert await listed(ecr, None) == ["bobs/public-app:1.0.0"]
    assert await listed(ecr, ALICE) == ["bobs/public-app:1.0.0", "lab/counter:1.0.0"]
    assert await listed(ecr, ALICE, owner="true") == ["lab/counter:1.0.0"]
    assert await listed(ecr, ALICE, nopublic="true") == ["lab/counter:1.0.0"]
    assert await listed(ecr, REVIEWER) == ["bobs/public-app:1.0.0", "lab/counter:1.0.0"]


async def test_the_listing_pages_with_a_continuation_token(given: Given, ecr: Ecr):
    for version in ("1.0.0", "1.1.0", "2.0.0"):
        await given.submitted(version=version)

    first = json.loads(await service.list_apps(ecr, ALICE, ListQuery(limit=2)))
    token = first["pagination"]["continuationToken"]
    query = ListQuery.model_validate({"limit": 2, "continue": token})
    rest = json.loads(await service.list_apps(ecr, ALICE, query))

    assert [a["version"] for a in first["data"] + rest["data"]] == ["1.0.0", "1.1.0", "2.0.0"]
    assert rest["pagination"]["continuationToken"] is None


async def test_a_namespace_is_claimed_once(ecr: Ecr):
    created = await service.create_namespace(ecr, ALICE, NamespaceCreate(id="lab"))

    assert created == {"id": "lab", "owner_id": "alice", "type": "namespace"}
    with pytest.raises(Conflict, match="already exists"):
        await service.create_namespace(ecr, BOB, NamespaceCreate(id="lab"))


async def test_a_namespace_holding_repositories_is_not_deleted(given: Given, ecr: Ecr):
    await given.submitted()

    with pytest.raises(Conflict, match="not empty"):
        await service.delete_namespace(ecr, ALICE, "lab")
    with pytest.raises(Conflict, match="not empty"):
        await service.delete_repository(ecr, ALICE, "lab", "counter")
    await service.delete_app(ecr, ALICE, *PATH)
    assert await service.delete_repository(ecr, ALICE, "lab", "counter") == {"deleted": 1}


async def test_a_namespace_is_listed_to_those_who_read_one_of_its_repositories(
    given: Given, ecr: Ecr
):
    await given.submitted()
    assert (await service.list_namespaces(ecr, BOB))["data"] == []

    await service.change_permissions(ecr, ALICE, "lab", "counter", share())

    assert [n["id"] for n in (await service.list_namespaces(ecr, BOB))["data"]] == ["lab"]
    namespace = await service.get_namespace(ecr, BOB, "lab")
    assert [r["name"] for r in namespace["repositories"]] == ["counter"]


async def test_repositories_show_their_grants_only_to_who_may_read_them(given: Given, ecr: Ecr):
    await given.submitted()
    await service.change_permissions(ecr, ALICE, "lab", "counter", share())
    await service.change_permissions(ecr, ALICE, "lab", "counter", make_public())
    query = RepositoryQuery(view="permissions")

    [mine] = (await service.list_repositories(ecr, ALICE, query))["data"]
    [theirs] = (await service.list_repositories(ecr, BOB, query))["data"]

    assert {p["grantee"] for p in mine["permissions"]} == {"alice", "bob", "AllUsers"}
    assert [p["grantee"] for p in theirs["permissions"]] == ["AllUsers"]
    assert theirs["public"] is True


async def test_removing_every_grant_keeps_the_owners_full_control(given: Given, ecr: Ecr):
    await given.submitted()
    await service.change_permissions(ecr, ALICE, "lab", "counter", share())

    removed = await service.change_permissions(
        ecr, ALICE, "lab", "counter", PermissionChange(operation="delete")
    )

    assert removed == {"deleted": 1}
    grants = await service.get_permissions(ecr, ALICE, "lab", "counter")
    assert [(g["grantee"], g["permission"]) for g in grants] == [("alice", "FULL_CONTROL")]
    with pytest.raises(NotFound):
        await service.get_permissions(ecr, BOB, "lab", "counter")


async def test_a_refused_deletion_queues_nothing(given: Given, ecr: Ecr, store: MemoryStore):
    await given.submitted()
    await service.set_frozen(ecr, ADMIN, *PATH, True)
    before = len(store.events)

    with pytest.raises(Forbidden):
        await service.delete_app(ecr, ALICE, *PATH)

    assert len(store.events) == before
    assert (await given.app()).frozen is True
