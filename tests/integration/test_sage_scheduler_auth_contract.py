"""The edge scheduler's login check, as waggle-sensor/edge-scheduler makes it.

Mirrors `pkg/cloudscheduler/authenticate.go` (`RealAuthenticator.validateTokenAndGetAuth`) and the
`pkg/interfacing` request it sends: `GET <AUTH_URL>/users/~self` (Go's `url.JoinPath`) with
`Content-Type: application/json`, `Authorization: Sage <token>` and `Accept: application/json`;
anything but 200, or a `Content-Type` other than the JSON one, fails the login; the body is decoded
into `UserAuth` (`url`, `username`, `email`, `name`, `is_staff`, `is_superuser`,
`ssh_public_keys`). Behind the gateway the auth service owns `/auth/...`, so the scheduler's
`AUTH_URL` is `<gateway>/auth`.
"""

from __future__ import annotations

import aiohttp

from sage_common.web import json_response
from tests.fixtures.gateway import Gateway
from tests.support.names import uniq

# Go's encoding/json fields of UserAuth, with the JSON types the decoder needs.
USER_AUTH = {
    "url": str,
    "username": str,
    "email": str,
    "name": str,
    "is_staff": bool,
    "is_superuser": bool,
    "ssh_public_keys": str,
}


async def validate_token_and_get_auth(
    http: aiohttp.ClientSession, auth_server_url: str, token: str
) -> tuple[int, str, dict | str]:
    """What RealAuthenticator.validateTokenAndGetAuth sends: (status, Content-Type, body)."""
    url = auth_server_url.rstrip("/") + "/users/~self"
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Sage {token}",
        "Accept": "application/json",
    }
    async with http.get(url, headers=headers) as resp:
        ctype = resp.headers.get("Content-Type", "")
        body = await resp.json(content_type=None) if resp.status == 200 else await resp.text()
        return resp.status, ctype, body


async def test_scheduler_reads_the_users_fields_from_users_self(http, auth_url, make_user):
    user = uniq("sched")
    token = await make_user(user, name="Sched Uler", email=f"{user}@example.org")
    status, ctype, body = await validate_token_and_get_auth(http, auth_url + "/auth", token)
    assert status == 200
    # ParseJSONHTTPResponse compares Content-Type for equality with "application/json"; the
    # route answers through json_response, whose header the common library keeps to exactly that.
    assert ctype == json_response({}).headers["Content-Type"]
    assert ctype.split(";")[0] == "application/json"
    for field, kind in USER_AUTH.items():
        assert isinstance(body[field], kind), field
    assert body["username"] == user and body["email"] == f"{user}@example.org"
    assert body["name"] == "Sched Uler"
    assert body["is_staff"] is False and body["is_superuser"] is False
    assert body["url"].endswith(f"/auth/users/{user}")


async def test_an_admin_is_staff_and_superuser_to_the_scheduler(http, auth_url, make_user):
    token = await make_user(uniq("sched-admin"), admin=True)
    status, _, body = await validate_token_and_get_auth(http, auth_url + "/auth", token)
    assert status == 200 and body["is_staff"] is True and body["is_superuser"] is True


async def test_a_bad_token_fails_the_schedulers_login(http, auth_url, make_user):
    for token in ("sage_" + "x" * 43, "change-me-ecr"):
        status, _, _ = await validate_token_and_get_auth(http, auth_url + "/auth", token)
        assert status == 401


async def test_a_service_account_is_not_a_user_to_the_scheduler(http, auth_url, service_secrets):
    status, _, _ = await validate_token_and_get_auth(
        http, auth_url + "/auth", service_secrets["builder"]
    )
    assert status == 404


async def test_the_scheduler_login_works_through_the_gateway(http, auth_url, make_user):
    """deploy/gateway/nginx.conf sends /auth/ to auth and nothing bare like /users/: the
    scheduler's AUTH_URL is <gateway>/auth."""
    gateway = Gateway([("/auth/", auth_url)])
    await gateway.start()
    try:
        user = uniq("sched-gw")
        token = await make_user(user)
        status, ctype, body = await validate_token_and_get_auth(http, gateway.url + "/auth", token)
        assert status == 200 and body["username"] == user
        assert ctype.split(";")[0] == "application/json"
        status, _, _ = await validate_token_and_get_auth(http, gateway.url, token)
        assert status == 404  # a bare /users/~self is not routed
    finally:
        await gateway.stop()
