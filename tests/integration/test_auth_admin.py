"""Users and groups: who may manage them (admin, plain user, anonymous), and what the API does."""

from __future__ import annotations

import pytest

from tests.fixtures.auth import call
from tests.support.names import uniq


@pytest.fixture
async def world(make_user):
    """An admin, a plain user, a target user in a target group, and a name for new things."""
    target, group = uniq("target"), uniq("grp")
    return {
        "admin": await make_user(uniq("root"), admin=True),
        "plain": await make_user(uniq("plain")),
        "target": target,
        "target_token": await make_user(target, groups=[group]),
        "group": group,
        "new": uniq("new"),
    }


ROUTES = [
    ("GET", "/auth/users", None, 200),
    ("POST", "/auth/users", {"username": "{new}"}, 201),
    ("GET", "/auth/users/{target}", None, 200),
    ("PATCH", "/auth/users/{target}", {"is_approved": False}, 200),
    ("DELETE", "/auth/users/{target}", None, 204),
    ("GET", "/auth/groups", None, 200),
    ("POST", "/auth/groups", {"name": "{new}"}, 201),
    ("GET", "/auth/groups/{group}", None, 200),
    ("DELETE", "/auth/groups/{group}", None, 204),
    ("PUT", "/auth/groups/{group}/members/{target}", None, 204),
    ("DELETE", "/auth/groups/{group}/members/{target}", None, 204),
]
ROLES = {"admin": None, "plain": 403, "anonymous": 401}


@pytest.mark.parametrize("role", list(ROLES))
@pytest.mark.parametrize(
    ("method", "path", "body", "ok"), ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES]
)
async def test_admin_routes_permission_matrix(http, auth_url, world, role, method, path, body, ok):
    url = auth_url + path.format(**world)
    if body is not None:
        body = {k: v.format(**world) if isinstance(v, str) else v for k, v in body.items()}
    token = world.get(role)
    status, answer = await call(http, method, url, token=token, json=body)
    assert status == (ROLES[role] or ok), answer
    if status >= 400:
        assert answer["status"] == status and answer["detail"]


async def test_an_admin_token_without_admin_scope_cannot_administer(http, auth_url, make_user):
    token = await make_user(uniq("scoped"), admin=True, scopes=["storage:read"])
    status, body = await call(http, "GET", f"{auth_url}/auth/users", token=token)
    assert status == 403 and "auth:admin" in body["detail"]
    token = await make_user(uniq("scoped"), admin=True, scopes=["auth:admin"])
    assert (await call(http, "GET", f"{auth_url}/auth/users", token=token))[0] == 200


async def test_user_lifecycle(http, auth_url, world):
    admin, name = world["admin"], world["new"]
    url = f"{auth_url}/auth/users"
    status, user = await call(
        http,
        "POST",
        url,
        token=admin,
        json={"username": name, "name": "New Person", "email": "n@example.org"},
    )
    assert status == 201
    assert user["username"] == name and user["is_admin"] is False and user["is_approved"] is False
    assert (await call(http, "POST", url, token=admin, json={"username": name}))[0] == 409
    status, user = await call(
        http, "PATCH", f"{url}/{name}", token=admin, json={"is_approved": True, "name": "N. P."}
    )
    assert status == 200 and user["is_approved"] is True and user["name"] == "N. P."
    assert user["email"] == "n@example.org"
    _, everyone = await call(http, "GET", url, token=admin)
    assert name in [u["username"] for u in everyone]
    assert (await call(http, "DELETE", f"{url}/{name}", token=admin))[0] == 204
    assert (await call(http, "GET", f"{url}/{name}", token=admin))[0] == 404
    assert (await call(http, "DELETE", f"{url}/{name}", token=admin))[0] == 404


@pytest.mark.parametrize(
    "body",
    [
        {"username": "A-upper"},
        {"username": "1starts-with-digit"},
        {"username": "x"},
        {"username": "a" * 65},
        {"username": "ok-name", "unexpected": True},
        {"username": "ok-name", "is_admin": "maybe"},
        {},
    ],
)
async def test_invalid_new_users_are_422(http, auth_url, world, body):
    url = f"{auth_url}/auth/users"
    status, answer = await call(http, "POST", url, token=world["admin"], json=body)
    assert status == 422 and answer["errors"]


async def test_group_membership_shows_in_whoami_and_group(http, auth_url, world):
    admin, target, group = world["admin"], world["target"], world["new"]
    groups = f"{auth_url}/auth/groups"
    assert (await call(http, "POST", groups, token=admin, json={"name": group}))[0] == 201
    members = f"{auth_url}/auth/groups/{group}/members/{target}"
    assert (await call(http, "PUT", members, token=admin))[0] == 204
    assert (await call(http, "PUT", members, token=admin))[0] == 204  # twice is harmless
    _, found = await call(http, "GET", f"{auth_url}/auth/groups/{group}", token=admin)
    assert found["members"] == [target]
    _, me = await call(http, "GET", f"{auth_url}/auth/whoami", token=world["target_token"])
    assert group in me["groups"]
    assert (await call(http, "DELETE", members, token=admin))[0] == 204
    assert (await call(http, "DELETE", members, token=admin))[0] == 404
    _, me = await call(http, "GET", f"{auth_url}/auth/whoami", token=world["target_token"])
    assert group not in me["groups"]


async def test_membership_of_unknown_user_or_group_is_404(http, auth_url, world):
    admin = world["admin"]
    url = f"{auth_url}/auth/groups/{world['group']}/members/{uniq('ghost')}"
    assert (await call(http, "PUT", url, token=admin))[0] == 404
    url = f"{auth_url}/auth/groups/{uniq('nogroup')}/members/{world['target']}"
    assert (await call(http, "PUT", url, token=admin))[0] == 404


async def test_an_admin_cannot_delete_or_demote_themselves(http, auth_url, make_user):
    me = uniq("self")
    token = await make_user(me, admin=True)
    assert (await call(http, "DELETE", f"{auth_url}/auth/users/{me}", token=token))[0] == 409
    status, _ = await call(
        http, "PATCH", f"{auth_url}/auth/users/{me}", token=token, json={"is_admin": False}
    )
    assert status == 409


async def test_demoted_admin_loses_admin_rights_at_once(http, auth_url, world, make_user):
    """Flags come from the database, not from when the token was made; a change here is seen now."""
    name = uniq("demoted")
    token = await make_user(name, admin=True)
    users = f"{auth_url}/auth/users"
    assert (await call(http, "GET", users, token=token))[0] == 200
    status, _ = await call(
        http, "PATCH", f"{users}/{name}", token=world["admin"], json={"is_admin": False}
    )
    assert status == 200
    assert (await call(http, "GET", users, token=token))[0] == 403
