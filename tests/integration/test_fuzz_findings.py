"""What schemathesis found answered 500, each now a 4xx that says what is wrong.

NUL characters reached Postgres (which refuses them in text) from JSON bodies and path parameters;
`"metadata": null` in a bucket PATCH crashed its validator.
"""

from __future__ import annotations

import uuid

import aiohttp
import pytest

from sage_common.errors import NUL_MESSAGE
from tests.fixtures.auth import call


@pytest.fixture
async def http() -> aiohttp.ClientSession:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def admin(make_user) -> str:
    return await make_user(f"nul-admin-{uuid.uuid4().hex[:8]}", admin=True)


def assert_nul_refused(status, body, loc=None):
    assert status == 422
    assert body["error"] == NUL_MESSAGE
    if loc is not None:
        assert body["errors"][0]["loc"] == loc


async def test_nul_in_a_token_name_is_422(http, auth_url, admin):
    status, body = await call(
        http, "POST", f"{auth_url}/auth/tokens", token=admin, json={"name": "a\x00b"}
    )
    assert_nul_refused(status, body, ["name"])


async def test_nul_in_a_new_users_email_is_422(http, auth_url, admin):
    name = f"nul-{uuid.uuid4().hex[:8]}"
    status, body = await call(
        http,
        "POST",
        f"{auth_url}/auth/users",
        token=admin,
        json={"username": name, "email": "\x00"},
    )
    assert_nul_refused(status, body, ["email"])
    status, _ = await call(http, "GET", f"{auth_url}/auth/users/{name}", token=admin)
    assert status == 404


async def test_nul_in_a_group_description_is_422(http, auth_url, admin):
    status, body = await call(
        http,
        "POST",
        f"{auth_url}/auth/groups",
        token=admin,
        json={"name": f"g-{uuid.uuid4().hex[:8]}", "description": "x\x00"},
    )
    assert_nul_refused(status, body, ["description"])


async def test_nul_in_a_user_update_is_422(http, auth_url, admin, make_user):
    name = f"nul-{uuid.uuid4().hex[:8]}"
    await make_user(name)
    status, body = await call(
        http, "PATCH", f"{auth_url}/auth/users/{name}", token=admin, json={"name": "\x00"}
    )
    assert_nul_refused(status, body, ["name"])


async def test_nul_in_a_path_parameter_is_422_not_500(http, auth_url, admin):
    status, body = await call(http, "GET", f"{auth_url}/auth/users/a%00b", token=admin)
    assert_nul_refused(status, body)


async def test_bucket_patch_with_null_metadata_keeps_the_metadata(http, storage_url, make_user):
    token = await make_user(f"meta-{uuid.uuid4().hex[:8]}")
    status, bucket = await call(
        http,
        "POST",
        f"{storage_url}/api/v1/objects",
        token=token,
        json={"name": "kept", "type": "model", "metadata": {"site": "W08"}},
    )
    assert status == 200
    url = f"{storage_url}/api/v1/objects/{bucket['id']}"
    status, body = await call(
        http, "PATCH", url, token=token, json={"metadata": None, "name": None, "type": None}
    )
    assert status == 200
    assert body["metadata"] == {"site": "W08"} and body["name"] == "kept"
    status, body = await call(
        http, "PATCH", url, token=token, json={"metadata": {"site": "W\x0008"}}
    )
    assert_nul_refused(status, body, ["metadata", "site"])


async def test_bucket_patch_with_null_metadata_is_a_4xx_for_no_token(http, storage_url):
    status, body = await call(
        http, "PATCH", f"{storage_url}/api/v1/objects/0", json={"metadata": None}
    )
    assert 400 <= status < 500 and body["error"]
