"""The SAGE portal's user calls, as sagecontinuum/sage-gui makes them.

Mirrors `components/apis/user.ts`: `getUserDetails()` GETs `${config.auth}/users/${user}` and
`getUsers()` `${config.auth}/users`, with `Authorization: sage <token>` (the token and user from
the cookies `components/auth/auth.ts` reads), and reads the `User` type's fields; an error answer
is read for `detail`. `config.auth` is `<gateway>/auth` here.
"""

from __future__ import annotations

import pytest

from tests.support.names import uniq

# components/apis/user.ts `type User`, with the JSON types it declares.
USER = {
    "username": str,
    "email": str,
    "name": str,
    "is_staff": bool,
    "is_approved": bool,
    "is_superuser": bool,
    "ssh_public_keys": str,
    "date_joined": str,
}


async def get(http, endpoint: str, token: str):
    """user.ts `get`: fetch with the sage header; not ok -> Error(errorObj.detail)."""
    async with http.get(endpoint, headers={"Authorization": f"sage {token}"}) as res:
        body = await res.json()
        if res.status >= 300:
            raise RuntimeError(body["detail"])
        return body


async def test_get_user_details_answers_the_portals_user_type(http, auth_url, make_user):
    user = uniq("portal-me")
    token = await make_user(user, approved=True, name="Portal Me", email=f"{user}@example.org")
    details = await get(http, f"{auth_url}/auth/users/{user}", token)
    for field, kind in USER.items():
        assert isinstance(details[field], kind), field
    assert details["username"] == user and details["is_approved"] is True
    assert "last_login" in details  # null until the first institutional login


async def test_get_users_is_for_admins_and_answers_the_user_type(http, auth_url, make_user):
    admin = await make_user(uniq("portal-admin"), admin=True)
    users = await get(http, f"{auth_url}/auth/users", admin)
    assert users and all(isinstance(u[f], k) for u in users for f, k in USER.items())
    with pytest.raises(RuntimeError, match="administrator"):
        await get(http, f"{auth_url}/auth/users", await make_user(uniq("portal-plain")))
