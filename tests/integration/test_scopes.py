"""What token scopes mean to a user, across the ECR API and storage (docs/auth.md, "Scopes").

A token made for storage cannot submit apps; a token made for reading cannot change anything; an
administrator's token holds administrator powers in a service only with that service's admin
scope. The full route-by-scope matrix is test_scope_matrix.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from tests.fixtures.auth import MakeUser, call
from tests.fixtures.s3 import RunningStorage
from tests.support.ecr import app_spec, busless_config, start_ecr
from tests.support.names import sfx


@dataclass
class Services:
    auth: str
    ecr: str
    storage: str
    http: aiohttp.ClientSession

    async def narrower(self, token: str, scopes: list[str]) -> str:
        """Another token of the same user with `scopes`, made through the auth service's API."""
        status, body = await call(
            self.http, "POST", f"{self.auth}/auth/tokens", token=token,
            json={"name": "narrow", "scopes": scopes},
        )  # fmt: skip
        assert status == 201, body
        return str(body["token"])

    async def submit(self, token: str, ns: str) -> tuple[int, dict]:
        return await call(
            self.http, "POST", f"{self.ecr}/api/submit", token=token, json=app_spec(ns, "app")
        )

    async def bucket(self, token: str) -> str:
        status, body = await call(
            self.http, "POST", f"{self.storage}/api/v1/objects", token=token,
            params={"type": "model", "name": "weights"},
        )  # fmt: skip
        assert status == 200, body
        return f"{self.storage}/api/v1/objects/{body['id']}"


@pytest.fixture(scope="module")
async def services(
    database_url: str, auth_url: str, auth_settings, storage_server: RunningStorage
) -> AsyncIterator[Services]:
    ecr = await start_ecr(busless_config(database_url, auth_settings("ecr-api"), "ecr_scopes"))
    async with aiohttp.ClientSession() as http:
        yield Services(auth_url, ecr.url, storage_server.url, http)
    await ecr.stop()


async def test_a_storage_token_cannot_submit_apps_but_uses_storage(
    services: Services, make_user: MakeUser
) -> None:
    token = await make_user(f"storer-{sfx()}", scopes=["storage"])
    status, body = await services.submit(token, f"ns{sfx()}")
    assert status == 403
    assert body["detail"] == "this token's scopes do not include ecr"
    assert (await call(services.http, "GET", await services.bucket(token), token=token))[0] == 200


async def test_an_ecr_token_submits_apps_but_cannot_touch_storage(
    services: Services, make_user: MakeUser
) -> None:
    token = await make_user(f"submitter-{sfx()}", scopes=["ecr"])
    ns = f"ns{sfx()}"
    status, app = await services.submit(token, ns)
    assert status == 200 and app["id"] == f"{ns}/app:1.0.0"
    status, body = await call(
        services.http, "GET", f"{services.storage}/api/v1/objects", token=token
    )
    assert status == 403 and body["detail"] == "this token's scopes do not include storage:read"


async def test_a_read_token_reads_the_users_apps_and_buckets_but_changes_nothing(
    services: Services, make_user: MakeUser
) -> None:
    full = await make_user(f"reader-{sfx()}")
    ns = f"ns{sfx()}"
    assert (await services.submit(full, ns))[0] == 200
    bucket_url = await services.bucket(full)
    read = await services.narrower(full, ["ecr:read", "storage:read"])
    app_url = f"{services.ecr}/api/apps/{ns}/app/1.0.0"
    assert (await call(services.http, "GET", app_url, token=read))[0] == 200
    status, body = await call(services.http, "DELETE", app_url, token=read)
    assert status == 403 and body["detail"] == "this token's scopes do not include ecr"
    assert (await call(services.http, "GET", bucket_url, token=read))[0] == 200
    status, body = await call(services.http, "PUT", f"{bucket_url}/new.txt", token=read, data=b"x")
    assert status == 403 and body["detail"] == "this token's scopes do not include storage"


async def test_an_admin_is_an_admin_in_the_ecr_only_with_the_ecr_admin_scope(
    services: Services, make_user: MakeUser
) -> None:
    ns = f"ns{sfx()}"
    assert (await services.submit(await make_user(f"owner-{sfx()}"), ns))[0] == 200
    admin = await make_user(f"root-{sfx()}", admin=True)
    app_url = f"{services.ecr}/api/apps/{ns}/app/1.0.0"
    plain = await services.narrower(admin, ["ecr", "storage:admin", "auth:admin"])
    assert (await call(services.http, "GET", app_url, token=plain))[0] == 404
    assert (await call(services.http, "DELETE", app_url, token=plain))[0] == 404
    status, body = await call(services.http, "POST", f"{app_url}/review", token=plain,
                              json={"decision": "approve"})  # fmt: skip
    assert status == 404, body
    wide = await services.narrower(admin, ["ecr:admin"])
    assert (await call(services.http, "GET", app_url, token=wide))[0] == 200
    assert (await call(services.http, "DELETE", app_url, token=wide))[0] == 200


async def test_an_admin_is_an_admin_in_storage_only_with_the_storage_admin_scope(
    services: Services, make_user: MakeUser
) -> None:
    bucket_url = await services.bucket(await make_user(f"owner-{sfx()}"))
    admin = await make_user(f"root-{sfx()}", admin=True)
    plain = await services.narrower(admin, ["storage", "ecr:admin", "auth:admin"])
    assert (await call(services.http, "GET", bucket_url, token=plain))[0] == 404
    assert (await call(services.http, "DELETE", bucket_url, token=plain))[0] == 404
    wide = await services.narrower(admin, ["storage:admin"])
    assert (await call(services.http, "GET", bucket_url, token=wide))[0] == 200
    assert (await call(services.http, "DELETE", bucket_url, token=wide))[0] == 200
