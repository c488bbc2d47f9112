"""The permission matrix: every ECR route against every kind of caller, on a private app.

Roles: the owner; users granted READ, WRITE, READ_ACP or WRITE_ACP on the repository; a member of
a group granted READ; a stranger; an unapproved user; anonymous; a reviewer; an administrator.
Each route lists the status every role gets; routes that change things get a fresh app per role.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import pytest

from sage_common.schemas import BuildDone, ProfileDone
from sage_ecr import service_builds
from sage_ecr.state import ECR
from tests.fixtures.auth import call
from tests.support.ecr import app_spec, busless_config, start_ecr
from tests.support.names import sfx

ROLES = (
    "owner",
    "reader",
    "writer",
    "acl_reader",
    "acl_writer",
    "group",
    "stranger",
    "unapproved",
    "anonymous",
    "reviewer",
    "admin",
)


@dataclass
class World:
    url: str
    ns: str
    name: str
    tokens: dict[str, str | None]
    names: dict[str, str]
    http: aiohttp.ClientSession
    ecr: object
    serial: int = 0

    def next_version(self) -> str:
        self.serial += 1
        return f"3.{self.serial}.0"

    async def fresh(self, *, review: bool = False) -> str:
        """A new version in the shared repository (submitted, or moved on to review)."""
        version = self.next_version()
        status, body = await call(
            self.http,
            "POST",
            f"{self.url}/api/submit",
            token=self.tokens["owner"],
            json=app_spec(self.ns, self.name, version),
        )
        assert status == 200, body
        if review:
            await to_review(self, version)
        return version


async def to_review(world: World, version: str) -> None:
    """Move a version to review as the builder's and profiler's events would."""
    app_id = f"{world.ns}/{world.name}:{version}"
    _, build = await call(
        world.http,
        "GET",
        f"{world.url}/api/builds/{world.ns}/{world.name}/{version}",
        token=world.tokens["owner"],
    )
    async with world.ecr.app[ECR].store.transaction() as tx:
        await service_builds.on_build_done(
            tx,
            BuildDone(
                app_id=app_id,
                build_id=build["build_id"],
                status="success",
                image=f"127.0.0.1:5000/{world.ns}/{world.name}:{version}",
                index_digest="sha256:" + "d" * 64,
            ),
            str(uuid.uuid4()),
        )
        await service_builds.on_profile_done(
            tx,
            ProfileDone(
                app_id=app_id,
                build_id=build["build_id"],
                profile_id="p1",
                status="passed",
            ),
            str(uuid.uuid4()),
        )


@pytest.fixture(scope="module")
async def world(database_url, auth_settings, make_user):
    running = await start_ecr(busless_config(database_url, auth_settings("ecr-api"), "ecr_acl"))
    s = sfx()
    group = f"grp-{s}"
    names = {role: f"{role.replace('_', '-')}-{s}" for role in ROLES}
    tokens: dict[str, str | None] = {"anonymous": None}
    for role in ROLES:
        if role == "anonymous":
            continue
        tokens[role] = await make_user(
            names[role],
            admin=role == "admin",
            approved=role != "unapproved",
            groups=[group] if role == "group" else ["reviewers"] if role == "reviewer" else [],
        )
    async with aiohttp.ClientSession() as http:
        w = World(running.url, f"acl{s}", "app", tokens, names, http, running)
        await w.fresh(review=True)  # 3.1.0: the shared version, in review with a profile
        repo = f"{running.url}/api/permissions/{w.ns}/{w.name}"
        grants = [
            ("USER", names["reader"], "READ"),
            ("USER", names["writer"], "WRITE"),
            ("USER", names["acl_reader"], "READ_ACP"),
            ("USER", names["acl_writer"], "WRITE_ACP"),
            ("GROUP", group, "READ"),
        ]
        for kind, grantee, permission in grants:
            status, _ = await call(
                http,
                "PUT",
                repo,
                token=tokens["owner"],
                json={
                    "operation": "add",
                    "granteeType": kind,
                    "grantee": grantee,
                    "permission": permission,
                },
            )
            assert status == 200
        yield w
    await running.stop()


Request = Callable[[World, str], Awaitable[tuple[str, str, dict]]]


def shared(method: str, path: str, **kw) -> Request:
    async def make(world: World, role: str) -> tuple[str, str, dict]:
        return method, path.format(ns=world.ns, name=world.name, v="3.1.0"), kw

    return make


def fresh(method: str, path: str, *, review: bool = False, **kw) -> Request:
    async def make(world: World, role: str) -> tuple[str, str, dict]:
        version = await world.fresh(review=review)
        return method, path.format(ns=world.ns, name=world.name, v=version), kw

    return make


def new_version(path: str) -> Request:
    async def make(world: World, role: str) -> tuple[str, str, dict]:
        version = world.next_version()
        body = app_spec(world.ns, world.name, version)
        return "POST", path.format(ns=world.ns, name=world.name, v=version), {"json": body}

    return make


def new_namespace() -> Request:
    async def make(world: World, role: str) -> tuple[str, str, dict]:
        return "PUT", "/api/namespaces", {"json": {"id": f"ns{sfx()}"}}

    return make


def expect(default: int, **by_role: int) -> dict[str, int]:
    return {role: by_role.get(role, default) for role in ROLES}


# Who may read the app: the owner, READ/WRITE grantees, the group, reviewers and admins.
READERS = {"owner", "reader", "writer", "group", "reviewer", "admin"}
READ = expect(404, **{r: 200 for r in READERS})
GRANT = {
    "json": {"operation": "add", "granteeType": "USER", "grantee": "nobody", "permission": "READ"}
}
APP = "/api/apps/{ns}/{name}/{v}"

MATRIX: dict[str, tuple[Request, dict[str, int]]] = {
    "get app": (shared("GET", APP), READ),
    "app status": (shared("GET", APP + "/status"), READ),
    "app logs": (shared("GET", APP + "/logs"), READ),
    "app profile": (shared("GET", APP + "/profile"), READ),
    "get build": (shared("GET", "/api/builds/{ns}/{name}/{v}"), READ),
    "rebuild": (
        fresh("POST", "/api/builds/{ns}/{name}/{v}"),
        expect(404, owner=200, writer=200, admin=200, reader=403, group=403, reviewer=403),
    ),
    "delete app": (
        fresh("DELETE", APP),
        expect(404, owner=200, admin=200, reader=403, writer=403, group=403, reviewer=403),
    ),
    "freeze app": (
        fresh("PUT", APP + "?frozen=true"),
        expect(404, admin=200, owner=403, reader=403, writer=403, group=403, reviewer=403),
    ),
    "review": (
        fresh("POST", APP + "/review", review=True, json={"decision": "approve"}),
        expect(404, reviewer=200, admin=200, owner=403, reader=403, writer=403, group=403),
    ),
    "submit": (
        new_version("/api/submit"),
        expect(403, owner=200, writer=200, admin=200, anonymous=401),
    ),
    "submit to url": (
        new_version(APP),
        expect(403, owner=200, writer=200, admin=200, anonymous=401),
    ),
    "get repository": (shared("GET", "/api/repositories/{ns}/{name}"), READ),
    "delete repository (not empty)": (
        shared("DELETE", "/api/repositories/{ns}/{name}"),
        expect(404, owner=409, admin=409, reader=403, writer=403, group=403, reviewer=403),
    ),
    "read repository acl": (
        shared("GET", "/api/permissions/{ns}/{name}"),
        expect(
            404,
            owner=200,
            acl_reader=200,
            acl_writer=200,
            admin=200,
            reader=403,
            writer=403,
            group=403,
            reviewer=403,
        ),
    ),
    "change repository acl": (
        shared("PUT", "/api/permissions/{ns}/{name}", **GRANT),
        expect(
            404,
            owner=200,
            acl_writer=200,
            admin=200,
            acl_reader=403,
            reader=403,
            writer=403,
            group=403,
            reviewer=403,
        ),
    ),
    "get namespace": (shared("GET", "/api/namespaces/{ns}"), READ),
    "delete namespace (not empty)": (
        shared("DELETE", "/api/namespaces/{ns}"),
        expect(404, owner=409, admin=409, reader=403, writer=403, group=403, reviewer=403),
    ),
    "read namespace acl": (
        shared("GET", "/api/permissions/{ns}"),
        expect(404, owner=200, admin=200, reader=403, writer=403, group=403, reviewer=403),
    ),
    "change namespace acl": (
        shared("PUT", "/api/permissions/{ns}", **GRANT),
        expect(404, owner=200, admin=200, reader=403, writer=403, group=403, reviewer=403),
    ),
    "create namespace": (new_namespace(), expect(200, unapproved=403, anonymous=401)),
    "app schema": (shared("GET", "/api/schema/app.json"), expect(200)),
    "registry access": (
        shared("GET", "/api/registry/access?username=x&repository={ns}/{name}"),
        expect(403, admin=200, anonymous=401),
    ),
}


@pytest.mark.parametrize("route", list(MATRIX))
async def test_route_answers_each_role_as_the_matrix_says(world, route):
    make, expected = MATRIX[route]
    got = {}
    for role in ROLES:
        method, path, kw = await make(world, role)
        got[role], body = await call(
            world.http, method, world.url + path, token=world.tokens[role], **kw
        )
        if got[role] >= 400:
            assert body["status"] == got[role] and body["error"]  # problem+json, SAGE's member
    assert got == expected


LISTINGS = [
    "/api/apps",
    "/api/apps/{ns}",
    "/api/apps/{ns}/{name}",
    "/api/repositories",
    "/api/repositories/{ns}",
    "/api/namespaces",
]


@pytest.mark.parametrize("listing", LISTINGS)
async def test_listings_show_the_private_app_only_to_its_readers(world, listing):
    shown = set()
    for role in ROLES:
        status, body = await call(
            world.http,
            "GET",
            world.url + listing.format(ns=world.ns, name=world.name),
            token=world.tokens[role],
        )
        assert status == 200
        ids = {item.get("id") or f"{item['namespace']}/{item['name']}" for item in body["data"]}
        if ids & {f"{world.ns}/{world.name}:3.1.0", f"{world.ns}/{world.name}", world.ns}:
            shown.add(role)
    assert shown == READERS


async def test_anonymous_callers_of_a_public_app_read_it_but_get_401_for_changes(world):
    version = await world.fresh()
    path = f"/api/apps/{world.ns}/{world.name}/{version}"
    owner = world.tokens["owner"]
    await call(
        world.http,
        "PUT",
        f"{world.url}/api/permissions/{world.ns}/{world.name}",
        token=owner,
        json={
            "operation": "add",
            "granteeType": "GROUP",
            "grantee": "AllUsers",
            "permission": "READ",
        },
    )
    try:
        assert (await call(world.http, "GET", world.url + path))[0] == 200
        assert (await call(world.http, "DELETE", world.url + path))[0] == 401
        assert (
            await call(
                world.http, "POST", f"{world.url}/api/builds/{world.ns}/{world.name}/{version}"
            )
        )[0] == 401
        assert (await call(world.http, "DELETE", world.url + path, token=world.tokens["stranger"]))[
            0
        ] == 403
    finally:
        await call(
            world.http,
            "PUT",
            f"{world.url}/api/permissions/{world.ns}/{world.name}",
            token=owner,
            json={"operation": "delete", "granteeType": "GROUP", "grantee": "AllUsers"},
        )
