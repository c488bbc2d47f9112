"""Registry tokens the builder asks on a submitter's behalf: that user's rights, pull only."""

from __future__ import annotations

import uuid

import aiohttp
import jwt
import pytest

from tests.fixtures.auth import call
from tests.fixtures.registry import registry_token


def basic(user: str, secret: str) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth(user, secret)}


def claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


async def test_builder_on_an_admins_behalf_gets_pull_and_never_push(
    http, auth_url, service_secrets, make_user
):
    admin = f"adm{uuid.uuid4().hex[:8]}"
    await make_user(admin, admin=True)
    headers = basic(f"builder+{admin}", service_secrets["builder"])
    token = await registry_token(http, auth_url, "repository:victim/app:pull,push", headers)
    assert claims(token)["sub"] == admin
    assert claims(token)["access"] == [
        {"type": "repository", "name": "victim/app", "actions": ["pull"]}
    ]


@pytest.mark.parametrize("who", ["plain", "nobody"])
async def test_builder_on_behalf_of_a_plain_or_unknown_user_reads_no_private_repository(
    http, auth_url, service_secrets, make_user, who
):
    user = f"{who}{uuid.uuid4().hex[:8]}"
    if who == "plain":
        await make_user(user)
    headers = basic(f"builder+{user}", service_secrets["builder"])
    token = await registry_token(http, auth_url, "repository:victim/app:pull", headers)
    assert claims(token)["access"] == []
    assert claims(token)["sub"] in (user, "")


@pytest.mark.parametrize(
    "client, user", [("profiler", "profiler+alice"), ("builder", "builder+"), ("builder", "x+y")]
)
async def test_only_the_builder_may_act_for_someone_and_only_as_itself(
    http, auth_url, service_secrets, client, user
):
    status, _ = await call(
        http,
        "GET",
        f"{auth_url}/auth/registry/token",
        params={"service": "sage-registry", "scope": "repository:victim/app:pull"},
        headers=basic(user, service_secrets[client]),
    )
    assert status == 401
