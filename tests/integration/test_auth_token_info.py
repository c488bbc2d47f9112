"""RFC 7662 introspection: only known services may ask; live tokens are active, others are not."""

from __future__ import annotations

import time
import uuid

import aiohttp
import pytest

from sage_auth.state import STORE
from tests.fixtures.auth import call


@pytest.fixture
def basic(service_secrets):
    def header(client_id: str, secret: str | None = None) -> dict[str, str]:
        value = secret if secret is not None else service_secrets[client_id]
        return {"Authorization": aiohttp.encode_basic_auth(client_id, value)}

    return header


async def ask(http, auth_url, headers, token: str) -> tuple[int, dict]:
    return await call(
        http, "POST", f"{auth_url}/auth/token_info", headers=headers, data={"token": token}
    )


async def test_live_token_is_active_with_the_users_facts(http, auth_url, basic, make_user):
    user = f"info-{uuid.uuid4().hex[:8]}"
    token = await make_user(user, admin=True, groups=["info-b", "info-a"], scopes=["a", "b"])
    status, body = await ask(http, auth_url, basic("ecr-api"), token)
    assert status == 200
    assert body["active"] is True
    assert body["username"] == user
    assert body["scope"] == "a b"
    assert body["groups"] == ["info-a", "info-b"]
    assert body["is_admin"] is True and body["is_approved"] is True
    assert body["client_id"] is None
    assert time.time() < body["exp"] <= time.time() + 86400 + 5


@pytest.mark.parametrize("client", ["ecr-api", "storage", "builder", "profiler"])
async def test_every_service_account_may_ask(http, auth_url, basic, make_user, client):
    token = await make_user(f"svc-{uuid.uuid4().hex[:8]}")
    status, body = await ask(http, auth_url, basic(client), token)
    assert status == 200 and body["active"] is True


async def test_unknown_token_is_inactive(http, auth_url, basic):
    status, body = await ask(http, auth_url, basic("ecr-api"), "sage_nothing-like-this")
    assert (status, body) == (200, {"active": False})


async def test_expired_and_revoked_tokens_are_inactive(http, auth_url, auth_app, basic, make_user):
    expired_user, revoked_user = (f"inact-{uuid.uuid4().hex[:8]}" for _ in range(2))
    expired = await make_user(expired_user)
    revoked = await make_user(revoked_user)
    pool = auth_app[STORE].pool
    await pool.execute("UPDATE tokens SET expires_at = now() WHERE username = $1", expired_user)
    await pool.execute("UPDATE tokens SET revoked_at = now() WHERE username = $1", revoked_user)
    for token in (expired, revoked):
        assert await ask(http, auth_url, basic("storage"), token) == (200, {"active": False})


async def test_deleted_users_tokens_are_inactive(http, auth_url, basic, make_user):
    user = f"gone-{uuid.uuid4().hex[:8]}"
    token = await make_user(user)
    admin = await make_user(f"adm-{uuid.uuid4().hex[:8]}", admin=True)
    status, _ = await call(http, "DELETE", f"{auth_url}/auth/users/{user}", token=admin)
    assert status == 204
    assert await ask(http, auth_url, basic("storage"), token) == (200, {"active": False})


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": aiohttp.encode_basic_auth("ecr-api", "wrong-secret")},
        {"Authorization": aiohttp.encode_basic_auth("nobody", "wrong-secret")},
        {"Authorization": "Basic !!!notbase64"},
        {"Authorization": "Basic " + "ZWNyLWFwaQ=="},  # "ecr-api" with no colon
        {"Authorization": "Bearer something"},
    ],
    ids=["none", "wrong-secret", "unknown-client", "bad-base64", "no-colon", "bearer"],
)
async def test_callers_without_service_credentials_get_401(http, auth_url, make_user, headers):
    token = await make_user(f"pry-{uuid.uuid4().hex[:8]}")
    status, body = await ask(http, auth_url, headers, token)
    assert status == 401
    assert "active" not in body


async def test_one_services_secret_under_another_client_id_is_401(
    http, auth_url, basic, make_user, service_secrets
):
    token = await make_user(f"mix-{uuid.uuid4().hex[:8]}")
    swapped = basic("ecr-api", service_secrets["storage"])
    assert (await ask(http, auth_url, swapped, token))[0] == 401


async def test_a_users_token_is_not_a_service_credential(http, auth_url, make_user):
    user = f"notsvc-{uuid.uuid4().hex[:8]}"
    token = await make_user(user, admin=True)
    headers = {"Authorization": aiohttp.encode_basic_auth(user, token)}
    assert (await ask(http, auth_url, headers, token))[0] == 401


async def test_a_json_body_gets_sages_answer_and_other_bodies_are_415(
    http, auth_url, basic, make_user
):
    user = f"json-{uuid.uuid4().hex[:8]}"
    token = await make_user(user)
    url = f"{auth_url}/auth/token_info"
    status, body = await call(http, "POST", url, headers=basic("ecr-api"), json={"token": token})
    assert status == 200 and body["username"] == user and "sub" not in body  # SAGE's dialect
    status, body = await call(
        http, "POST", url, headers={**basic("ecr-api"), "Content-Type": "text/plain"}, data="x"
    )
    assert status == 415 and body["status"] == 415


async def test_missing_token_field_is_400(http, auth_url, basic):
    status, _ = await call(
        http, "POST", f"{auth_url}/auth/token_info", headers=basic("ecr-api"), data={"tok": "x"}
    )
    assert status == 400


async def test_a_service_secret_introspects_as_its_service_account(
    http, auth_url, basic, service_secrets
):
    """Services may call each other with their own secret as a token: `service:<client_id>`."""
    status, body = await ask(http, auth_url, basic("ecr-api"), service_secrets["builder"])
    assert status == 200 and body["active"] is True
    assert body["username"] == "service:builder" and body["client_id"] == "builder"
    assert body["is_admin"] is False
