"""User tokens end to end: whoami, create, list, revoke, expiry, and revocation through a cache."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import aiohttp

from sage_auth.state import LOCAL, STORE
from sage_common.auth import IntrospectionClient, token_hash
from tests.fixtures.auth import call
from tests.support.names import uniq


async def test_whoami_describes_the_user_and_the_token(http, auth_url, make_user):
    user = uniq("who")
    token = await make_user(user, groups=["whoami-grp"], scopes=["all"], name="Who Ever")
    status, body = await call(http, "GET", f"{auth_url}/auth/whoami", token=token)
    assert status == 200
    assert body == {
        "username": user,
        "name": "Who Ever",
        "email": "",
        "is_admin": False,
        "is_approved": True,
        "groups": ["whoami-grp"],
        "scopes": ["all"],
    }


async def test_scheme_is_case_insensitive_and_bearer_and_basic_work(http, auth_url, make_user):
    user = uniq("schemes")
    token = await make_user(user)
    for header in (f"SAGE {token}", f"Bearer {token}", aiohttp.encode_basic_auth(user, token)):
        status, body = await call(
            http, "GET", f"{auth_url}/auth/whoami", headers={"Authorization": header}
        )
        assert status == 200 and body["username"] == user, header.split()[0]


async def test_created_token_is_shown_once_and_works(http, auth_url, make_user):
    token = await make_user(uniq("creator"), days=30)
    status, new = await call(
        http,
        "POST",
        f"{auth_url}/auth/tokens",
        token=token,
        json={"name": "laptop", "scopes": ["storage:read"], "expires_in_days": 7},
    )
    assert status == 201
    assert set(new) == {"id", "name", "token", "scopes", "expires_at", "created_at"}
    assert new["token"].startswith("sage_") and len(new["token"]) >= 48
    assert new["scopes"] == ["storage:read"]
    _, me = await call(http, "GET", f"{auth_url}/auth/whoami", token=new["token"])
    assert me["scopes"] == ["storage:read"]
    _, listed = await call(http, "GET", f"{auth_url}/auth/tokens", token=token)
    assert [t["name"] for t in listed] == ["test", "laptop"]
    assert all("token" not in t for t in listed)
    assert listed[1]["revoked"] is False and listed[1]["id"] == new["id"]


async def test_tokens_are_stored_only_as_hashes(auth_app, make_user):
    user = uniq("hashed")
    token = await make_user(user)
    rows = await auth_app[STORE].pool.fetch("SELECT * FROM tokens WHERE username = $1", user)
    assert len(rows) == 1
    assert rows[0]["token_hash"] == token_hash(token)
    assert all(token not in str(value) for value in rows[0].values())


async def test_a_token_cannot_grant_scopes_it_lacks(http, auth_url, make_user):
    token = await make_user(uniq("narrow"), scopes=["storage:read"])
    url = f"{auth_url}/auth/tokens"
    status, _ = await call(http, "POST", url, token=token, json={"name": "w", "scopes": ["all"]})
    assert status == 403
    status, same = await call(http, "POST", url, token=token, json={"name": "same"})
    assert status == 201 and same["scopes"] == ["storage:read"]


async def test_token_lifetime_is_bounded(http, auth_url, auth_config, make_user):
    token = await make_user(uniq("forever"))
    body = {"name": "x", "expires_in_days": auth_config.token_max_days + 1}
    status, _ = await call(http, "POST", f"{auth_url}/auth/tokens", token=token, json=body)
    assert status == 422


async def test_owner_revokes_and_the_token_stops_working(http, auth_url, make_user):
    token = await make_user(uniq("revoker"))
    _, new = await call(http, "POST", f"{auth_url}/auth/tokens", token=token, json={"name": "t"})
    status, _ = await call(http, "DELETE", f"{auth_url}/auth/tokens/{new['id']}", token=token)
    assert status == 204
    status, _ = await call(http, "GET", f"{auth_url}/auth/whoami", token=new["token"])
    assert status == 401
    _, listed = await call(http, "GET", f"{auth_url}/auth/tokens", token=token)
    assert [t["revoked"] for t in listed] == [False, True]


async def test_someone_elses_token_is_404_but_an_admin_may_revoke_it(http, auth_url, make_user):
    victim = await make_user(uniq("victim"))
    other = await make_user(uniq("other"))
    admin = await make_user(uniq("admin"), admin=True)
    _, new = await call(http, "POST", f"{auth_url}/auth/tokens", token=victim, json={"name": "t"})
    url = f"{auth_url}/auth/tokens/{new['id']}"
    assert (await call(http, "DELETE", url, token=other))[0] == 404
    assert (await call(http, "DELETE", f"{auth_url}/auth/tokens/nope", token=other))[0] == 404
    assert (await call(http, "GET", f"{auth_url}/auth/whoami", token=new["token"]))[0] == 200
    assert (await call(http, "DELETE", url, token=admin))[0] == 204
    assert (await call(http, "GET", f"{auth_url}/auth/whoami", token=new["token"]))[0] == 401


async def test_admin_lists_anyones_tokens_others_may_not(http, auth_url, make_user):
    user = uniq("listed")
    await make_user(user)
    plain = await make_user(uniq("nosy"))
    admin = await make_user(uniq("admin"), admin=True)
    url = f"{auth_url}/auth/tokens?username={user}"
    status, listed = await call(http, "GET", url, token=admin)
    assert status == 200 and [t["username"] for t in listed] == [user]
    assert (await call(http, "GET", url, token=plain))[0] == 403


async def test_unapproved_user_may_see_itself_and_manage_its_tokens(http, auth_url, make_user):
    token = await make_user(uniq("pending"), approved=False)
    status, me = await call(http, "GET", f"{auth_url}/auth/whoami", token=token)
    assert status == 200 and me["is_approved"] is False
    url = f"{auth_url}/auth/tokens"
    status, new = await call(http, "POST", url, token=token, json={"name": "t"})
    assert status == 201
    status, _ = await call(http, "DELETE", f"{auth_url}/auth/tokens/{new['id']}", token=token)
    assert status == 204


async def test_expired_token_is_refused(http, auth_url, auth_app, make_user):
    user = uniq("expired")
    token = await make_user(user)
    await auth_app[STORE].pool.execute(
        "UPDATE tokens SET expires_at = now() - interval '1 second' WHERE username = $1", user
    )
    auth_app[LOCAL].forget(token_hash(token))  # as if the cache TTL had passed
    status, body = await call(http, "GET", f"{auth_url}/auth/whoami", token=token)
    assert status == 401 and body["status"] == 401


async def test_unknown_token_is_401_with_a_challenge(http, auth_url):
    unknown = {"Authorization": "sage sage_unknown"}
    async with http.get(f"{auth_url}/auth/whoami", headers=unknown) as resp:
        assert resp.status == 401
        assert resp.content_type == "application/problem+json"
        assert "sage" in resp.headers["WWW-Authenticate"]


async def test_anonymous_whoami_is_401(http, auth_url):
    assert (await call(http, "GET", f"{auth_url}/auth/whoami"))[0] == 401


async def test_last_use_is_recorded_in_batches(http, auth_url, auth_app, make_user):
    token = await make_user(uniq("used"))
    _, listed = await call(http, "GET", f"{auth_url}/auth/tokens", token=token)
    assert listed[0]["last_used_at"] is None  # not written per request ...
    await auth_app[LOCAL].usage.flush(auth_app[STORE])
    _, listed = await call(http, "GET", f"{auth_url}/auth/tokens", token=token)
    assert listed[0]["last_used_at"] is not None  # ... but in the next batch


async def test_revoked_token_stops_working_within_the_introspection_ttl(
    http, auth_url, auth_settings, make_user
):
    """Another service caches token_info answers; a revocation reaches it within its TTL."""
    ttl = 0.5
    settings = auth_settings("storage")
    client = IntrospectionClient(
        settings["auth_url"], settings["client_id"], settings["client_secret"], ttl=ttl
    )
    try:
        owner = await make_user(uniq("ttl"))
        url = f"{auth_url}/auth/tokens"
        _, new = await call(http, "POST", url, token=owner, json={"name": "t"})
        assert (await client.introspect(new["token"])) is not None
        status, _ = await call(http, "DELETE", f"{auth_url}/auth/tokens/{new['id']}", token=owner)
        assert status == 204
        revoked_at = time.monotonic()
        # still cached right after the revocation: the cache is real ...
        assert (await client.introspect(new["token"])) is not None
        # ... and the revocation wins within the TTL
        while (await client.introspect(new["token"])) is not None:
            assert time.monotonic() - revoked_at < ttl + 0.5, "revocation not seen within the TTL"
            await asyncio.sleep(0.05)
    finally:
        await client.close()


async def test_a_token_cannot_make_a_token_that_outlives_it(http, auth_url, make_user):
    """A 1-day token asking for 3650 days is refused; left to the default, the new token expires
    with its parent (docs/auth.md, "Tokens")."""
    token = await make_user(uniq("short"), days=1)
    url = f"{auth_url}/auth/tokens"
    status, body = await call(
        http, "POST", url, token=token, json={"name": "long", "expires_in_days": 3650}
    )
    assert status == 422 and "outlive" in body["detail"]
    _, me = await call(http, "GET", f"{auth_url}/auth/tokens", token=token)
    parent = datetime.fromisoformat(me[0]["expires_at"])
    status, child = await call(http, "POST", url, token=token, json={"name": "default"})
    assert status == 201
    assert datetime.fromisoformat(child["expires_at"]) <= parent
    # and the child cannot stretch the chain either
    status, _ = await call(
        http, "POST", url, token=child["token"], json={"name": "g", "expires_in_days": 2}
    )
    assert status == 422
