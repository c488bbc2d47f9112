"""Who sees and changes which namespace, repository and version: the 401/403/404 rules, on the
fake store."""

from __future__ import annotations

import pytest

from sage_common.errors import Forbidden, NotFound, Unauthorized
from sage_ecr import service, service_access
from sage_ecr.acl import Permission
from sage_ecr.models import PermissionChange
from sage_ecr.service_access import Policy
from sage_ecr.store_memory import MemoryStore
from tests.support.ecr_memory import ALICE, BOB, REVIEWER, Given, person

POLICY = Policy()


async def app_for(store: MemoryStore, who, need: Permission):
    async with store.read() as tx:
        return await service_access.app_for(tx, who, POLICY, "lab", "counter", "1.0.0", need)


async def grant(given: Given, grantee_type: str, grantee: str, permission: Permission) -> None:
    change = PermissionChange(
        operation="add", granteeType=grantee_type, grantee=grantee, permission=permission
    )
    await service.change_permissions(given.ecr, ALICE, "lab", "counter", change)


async def test_a_private_version_does_not_exist_for_strangers(given: Given, store: MemoryStore):
    await given.submitted()

    for who in (None, BOB):
        with pytest.raises(NotFound, match="no app lab/counter:1.0.0"):
            await app_for(store, who, Permission.READ)
    assert (await app_for(store, ALICE, Permission.FULL_CONTROL)).owner == "alice"


async def test_a_reader_is_refused_a_change_and_anonymous_is_asked_for_a_token(
    given: Given, store: MemoryStore
):
    await given.submitted()
    await grant(given, "GROUP", "AllUsers", Permission.READ)

    assert (await app_for(store, None, Permission.READ)).ident == "lab/counter:1.0.0"
    with pytest.raises(Unauthorized, match="Authorization: sage"):
        await app_for(store, None, Permission.WRITE)
    with pytest.raises(Forbidden, match="needs WRITE"):
        await app_for(store, BOB, Permission.WRITE)


async def test_a_group_grant_reaches_its_members(given: Given, store: MemoryStore):
    await given.submitted()
    await grant(given, "GROUP", "lab-members", Permission.WRITE)

    member = person("carol", groups=("lab-members",))
    assert (await app_for(store, member, Permission.WRITE)).ident == "lab/counter:1.0.0"


async def test_reviewers_read_everything_and_change_nothing(given: Given, store: MemoryStore):
    await given.submitted()

    assert (await app_for(store, REVIEWER, Permission.READ)).ident == "lab/counter:1.0.0"
    with pytest.raises(Forbidden):
        await app_for(store, REVIEWER, Permission.WRITE)


async def test_whoever_may_read_the_acl_sees_the_repository(given: Given, store: MemoryStore):
    await given.submitted()
    await grant(given, "USER", "bob", Permission.READ_ACP)

    async with store.read() as tx:
        repo = await service_access.repository_for(
            tx, BOB, POLICY, "lab", "counter", Permission.READ_ACP
        )
        assert repo.owner == "alice"
        with pytest.raises(NotFound):
            await service_access.repository_for(tx, BOB, POLICY, "lab", "counter", Permission.WRITE)


async def test_a_namespace_is_visible_through_a_repository_one_may_read(
    given: Given, store: MemoryStore
):
    await given.submitted()
    await grant(given, "USER", "bob", Permission.READ)

    async with store.read() as tx:
        namespace = await service_access.namespace_for(tx, BOB, POLICY, "lab", Permission.READ)
        assert namespace.owner == "alice"
        with pytest.raises(Forbidden):
            await service_access.namespace_for(tx, BOB, POLICY, "lab", Permission.WRITE)
        with pytest.raises(NotFound):
            await service_access.namespace_for(tx, None, POLICY, "lab", Permission.READ)


@pytest.mark.parametrize(
    ("who", "error"),
    [(None, Unauthorized), (person("newcomer", approved=False), Forbidden)],
)
def test_only_approved_users_submit(who, error):
    with pytest.raises(error):
        service_access.require_submitter(who)
    assert service_access.require_submitter(ALICE) is ALICE
