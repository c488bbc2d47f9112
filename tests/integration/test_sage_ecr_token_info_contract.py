"""SAGE's own introspection form, as waggle-sensor/sage-ecr asks it.

Mirrors `authenticators.py` (`SageAuthenticator.get_token_info`) of sage-ecr: a requests session
with `Authorization: Sage <tokenInfoPassword>` POSTs `{"token": ...}` as JSON to
`tokenInfoEndpoint` (`<auth>/token_info/`; here `<gateway>/auth/token_info/`); 404 means "no such
token", any other error fails; a body without `active` counts as no token; then it GETs
`users/{username}` with the same session and reads `is_approved`. The answers follow
waggle-auth-app's `TokenInfoView` and its tests: 401 without credentials, 400 for a missing or
non-string token, 404 for an unknown one. Here only service accounts may ask (a person's token
is 403), and an expired or revoked token is as unknown as a made-up one.
"""

from __future__ import annotations

import pytest

from sage_auth.state import STORE
from sage_common.auth import token_hash
from tests.fixtures.auth import call
from tests.support.names import uniq


class TokenNotFound(Exception):
    pass


async def get_token_info(http, auth_url: str, password: str, token: str) -> dict:
    """SageAuthenticator.get_token_info: (username, is_approved, scopes) or TokenNotFound."""
    headers = {"Authorization": f"Sage {password}"}
    async with http.post(
        f"{auth_url}/auth/token_info/", json={"token": token}, headers=headers
    ) as r:
        if r.status == 404:
            raise TokenNotFound()
        assert r.status == 200, await r.text()
        token_info = await r.json()
    if "active" not in token_info:
        raise TokenNotFound()
    username = token_info["username"]
    async with http.get(f"{auth_url}/auth/users/{username}", headers=headers) as r:
        if r.status == 404:
            raise TokenNotFound()
        assert r.status == 200, await r.text()
        user_info = await r.json()
    return {
        "user": username,
        "is_approved": user_info.get("is_approved", False),
        "scopes": token_info.get("scopes", ""),
    }


async def test_sage_ecr_learns_the_user_and_approval_behind_a_token(
    http, auth_url, service_secrets, make_user
):
    user = uniq("ecr-info")
    token = await make_user(user, approved=True)
    info = await get_token_info(http, auth_url, service_secrets["ecr-api"], token)
    assert info["user"] == user and info["is_approved"] is True


async def test_token_info_answers_sages_fields(http, auth_url, service_secrets, make_user):
    user = uniq("ecr-fields")
    token = await make_user(user, scopes=["storage", "ecr"], groups=["ecr-fields-g"])
    status, body = await call(
        http,
        "POST",
        f"{auth_url}/auth/token_info/",
        json={"token": token},
        headers={"Authorization": f"Sage {service_secrets['storage']}"},
    )
    assert status == 200
    assert body["active"] is True and body["username"] == user
    assert body["scope"] == "ecr storage" and isinstance(body["client_id"], str)
    assert isinstance(body["exp"], int) and body["exp"] > 0
    assert body["groups"] == ["ecr-fields-g"]


async def test_unknown_expired_and_revoked_tokens_are_404(
    http, auth_url, auth_app, service_secrets, make_user
):
    secret = service_secrets["ecr-api"]
    expired, revoked = await make_user(uniq("expired")), await make_user(uniq("revoked"))
    pool = auth_app[STORE].pool
    await pool.execute(
        "UPDATE tokens SET expires_at = now() - interval '1 second' WHERE token_hash = $1",
        token_hash(expired),
    )
    await pool.execute(
        "UPDATE tokens SET revoked_at = now() WHERE token_hash = $1", token_hash(revoked)
    )
    for token in ("notarealtoken", expired, revoked, service_secrets["builder"]):
        with pytest.raises(TokenNotFound):
            await get_token_info(http, auth_url, secret, token)


async def test_missing_or_non_string_token_is_400(http, auth_url, service_secrets):
    headers = {"Authorization": f"Sage {service_secrets['ecr-api']}"}
    url = f"{auth_url}/auth/token_info/"
    for body in ({"nottoken": "..."}, {"token": 123}, {"token": None}, {"token": True}, ["x"]):
        status, _ = await call(http, "POST", url, json=body, headers=headers)
        assert status == 400, body


async def test_token_info_needs_a_services_credentials(http, auth_url, make_user):
    token = await make_user(uniq("snoop"), admin=True)
    url = f"{auth_url}/auth/token_info/"
    status, _ = await call(http, "POST", url, json={"token": token})
    assert status == 401
    # a person's token, even an admin's, is no service credential
    status, _ = await call(http, "POST", url, json={"token": token}, token=token)
    assert status == 403
    for made_up in ("change-me-ecr", "not-a-secret"):
        headers = {"Authorization": f"Sage {made_up}"}
        status, _ = await call(http, "POST", url, json={"token": token}, headers=headers)
        assert status == 401


async def test_users_follow_waggle_auth_apps_rules(http, auth_url, service_secrets, make_user):
    """users/{name}: anonymous 401, oneself 200, another user 403, an admin or a service 200."""
    me, other = uniq("self"), uniq("other")
    mine, theirs = await make_user(me), await make_user(other)
    admin = await make_user(uniq("boss"), admin=True)
    url = f"{auth_url}/auth/users/{other}"
    assert (await call(http, "GET", url))[0] == 401
    assert (await call(http, "GET", f"{auth_url}/auth/users/~self"))[0] == 401
    status, body = await call(http, "GET", url, token=theirs)
    assert status == 200 and body["username"] == other
    assert (await call(http, "GET", url, token=mine))[0] == 403
    # others get 403 whether the user exists or not: names cannot be probed
    assert (await call(http, "GET", f"{auth_url}/auth/users/{uniq('nobody')}", token=mine))[
        0
    ] == 403
    assert (await call(http, "GET", url, token=admin))[0] == 200
    assert (await call(http, "GET", url, token=service_secrets["ecr-api"]))[0] == 200
    assert (await call(http, "GET", f"{auth_url}/auth/users/{uniq('nobody')}", token=admin))[
        0
    ] == 404
    status, body = await call(http, "GET", f"{auth_url}/auth/users/~self", token=mine)
    assert status == 200 and body["username"] == me
    assert {"url", "is_staff", "is_superuser", "is_approved", "date_joined", "last_login"} <= set(
        body
    )
