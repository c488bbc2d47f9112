"""Every storage route against owner, grantee with each permission, group member, stranger,
anonymous and admin, on a private and on a public bucket: the exact status of each.

Rules (DESIGN.md): FULL_CONTROL implies all, WRITE implies READ, WRITE_ACP implies READ_ACP;
admins and the owner pass; a caller who may not read a bucket gets 404 for whatever it lacks (a
private bucket stays invisible); one who may read it but lacks the permission gets 403, or 401
when anonymous.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from tests.fixtures.auth import MakeUser
from tests.fixtures.s3 import RunningStorage

IMPLIES = {
    "READ": {"READ"},
    "WRITE": {"WRITE", "READ"},
    "READ_ACP": {"READ_ACP"},
    "WRITE_ACP": {"WRITE_ACP", "READ_ACP"},
    "FULL_CONTROL": {"READ", "WRITE", "READ_ACP", "WRITE_ACP", "FULL_CONTROL"},
}


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    path: str  # after /api/v1/objects/{id}
    needs: str
    kw: tuple[tuple[str, Any], ...] = ()


ROUTES = [
    Route("show bucket", "GET", "", "READ"),
    Route("show permissions", "GET", "?permissions", "READ_ACP"),
    Route(
        "add permission",
        "PUT",
        "?permissions",
        "WRITE_ACP",
        (("json", {"granteeType": "USER", "grantee": "someone", "permission": "READ"}),),
    ),
    Route("remove permission", "DELETE", "?permissions&grantee=USER:someone", "WRITE_ACP"),
    Route("update bucket", "PATCH", "", "FULL_CONTROL", (("json", {"name": "renamed"}),)),
    Route("delete bucket", "DELETE", "", "FULL_CONTROL"),
    Route("list objects", "GET", "/", "READ"),
    Route("download", "GET", "/f.txt", "READ"),
    Route("head", "HEAD", "/f.txt", "READ"),
    Route("upload", "PUT", "/new.txt", "WRITE", (("data", b"new"),)),
    Route("delete object", "DELETE", "/f.txt", "WRITE"),
]
GRANTEES = ["READ", "WRITE", "READ_ACP", "WRITE_ACP", "FULL_CONTROL"]
ROLES = [
    "owner",
    *(f"user:{p}" for p in GRANTEES),
    "group:READ",
    "group:WRITE",
    "stranger",
    "anonymous",
    "admin",
]


def expected(route: Route, role: str, public: bool) -> int:
    if role in ("owner", "admin"):
        return 200
    held = (IMPLIES[role.split(":")[1]] if ":" in role else set()) | ({"READ"} if public else set())
    if route.needs in held:
        return 200
    if "READ" not in held:
        return 404
    return 401 if role == "anonymous" else 403


@dataclass
class Cast:
    tokens: dict[str, str]
    grantees: dict[str, str]  # role -> the user or group name its grant names


@pytest.fixture(scope="module")
async def cast(make_user: MakeUser) -> Cast:
    tag = uuid.uuid4().hex[:8]
    tokens, grantees = {}, {}
    for role in ROLES:
        if role == "anonymous":
            continue
        name = f"{role.replace(':', '-').replace('_', '').lower()}-{tag}"
        group = f"lab-{role.split(':')[1].lower()}-{tag}" if role.startswith("group:") else None
        grantees[role] = group or name
        tokens[role] = await make_user(name, admin=role == "admin", groups=[group] if group else [])
    return Cast(tokens, grantees)


def _auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"sage {token}"} if token else {}


async def _bucket(http: aiohttp.ClientSession, url: str, cast: Cast, public: bool) -> str:
    owner = _auth(cast.tokens["owner"])
    async with http.post(
        f"{url}/api/v1/objects",
        headers=owner,
        params={"type": "model", "public": str(public).lower()},
    ) as r:
        assert r.status == 200
        bucket = (await r.json())["id"]
    for role in ROLES:
        kind, _, perm = role.partition(":")
        if kind not in ("user", "group"):
            continue
        body = {"granteeType": kind.upper(), "grantee": cast.grantees[role], "permission": perm}
        async with http.put(
            f"{url}/api/v1/objects/{bucket}?permissions", json=body, headers=owner
        ) as r:
            assert r.status == 200, await r.text()
    async with http.put(f"{url}/api/v1/objects/{bucket}/f.txt", data=b"file", headers=owner) as r:
        assert r.status == 200
    return str(bucket)


@pytest.mark.parametrize("public", [False, True], ids=["private", "public"])
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", ROUTES, ids=[r.name for r in ROUTES])
async def test_route_status_for_role(
    route: Route,
    role: str,
    public: bool,
    storage_server: RunningStorage,
    cast: Cast,
    http: aiohttp.ClientSession,
) -> None:
    url = storage_server.url
    bucket = await _bucket(http, url, cast, public)
    async with http.request(
        route.method,
        f"{url}/api/v1/objects/{bucket}{route.path}",
        headers=_auth(cast.tokens.get(role)),
        **dict(route.kw),
    ) as r:
        body = await r.read()
        assert r.status == expected(route, role, public), body[:300]
        if r.status >= 400 and route.method != "HEAD":
            assert b'"error"' in body


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("?permissions=false&grantee=USER:{who}", 200),
        ("?permissions=0&grantee=USER:{who}", 200),
        ("?permissions=&grantee=USER:{who}:READ", 200),
        ("?grantee=USER:{who}", 200),
        ("?permissions=false", 400),
        ("?permissions=no", 400),
    ],
)
async def test_a_grant_deletion_never_deletes_the_bucket(
    query: str,
    status: int,
    storage_server: RunningStorage,
    cast: Cast,
    http: aiohttp.ClientSession,
) -> None:
    url, owner = storage_server.url, _auth(cast.tokens["owner"])
    bucket = await _bucket(http, url, cast, public=False)
    who = cast.grantees["user:READ"]
    path = f"{url}/api/v1/objects/{bucket}"
    async with http.delete(path + query.format(who=who), headers=owner) as r:
        body = await r.json()
        assert r.status == status, body
    async with http.get(path, headers=owner) as r:
        assert r.status == 200, "the bucket is gone"
    async with http.get(f"{path}/f.txt", headers=owner) as r:
        assert r.status == 200 and await r.read() == b"file"
    async with http.get(path + "?permissions", headers=owner) as r:
        grantees = {g["grantee"] for g in await r.json()}
    assert (who in grantees) is (status != 200)
    if status == 200:
        assert body["deleted"] and body["deleted"][0].startswith(f"USER:{who}")
