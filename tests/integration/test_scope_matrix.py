"""The scope matrix: every route of auth, the ECR API and storage against a token of each scope.

The routes come from each service's route table (plus the routes every service has), the scope
each needs from the table beside it (`SCOPES` in routes.py), so a route added without a scope
fails here. Each pair is one real HTTP call: a token lacking the route's scope gets 403 naming the
scope; a token holding it (and an anonymous caller) gets past the check to the handler, which may
then refuse for its own reasons (the caller is an unapproved non-admin, the resource is absent).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web

from sage_auth import routes as auth_routes
from sage_builder.app import create_app as create_builder
from sage_builder.config import Config as BuilderConfig
from sage_common.scopes import COMMON_SCOPES, missing_scopes, route_key
from sage_common.web import SCOPES
from sage_ecr import routes as ecr_routes
from sage_profiler.app import create_app as create_profiler
from sage_profiler.config import Config as ProfilerConfig
from sage_storage import routes as storage_routes
from tests.fixtures.auth import MakeUser, RunningAuth
from tests.fixtures.s3 import RunningStorage
from tests.support.ecr import busless_config, start_ecr

# What a token of each scope opens, written out rather than computed: `all` opens everything,
# `X:admin` opens `X` and `X:read`, `X` opens `X:read`; `other` is a scope no route asks for.
OPENS: dict[str, set[str]] = {
    "ecr:read": {"ecr:read"},
    "ecr": {"ecr", "ecr:read"},
    "ecr:admin": {"ecr:admin", "ecr", "ecr:read"},
    "storage:read": {"storage:read"},
    "storage": {"storage", "storage:read"},
    "storage:admin": {"storage:admin", "storage", "storage:read"},
    "auth:admin": {"auth:admin"},
    "registry": {"registry"},
    "other": set(),
}
EVERY = set().union(*OPENS.values())
OPENS["all"] = EVERY
CALLERS = [*OPENS, "anonymous"]
_PARAM = re.compile(r"\{([^}:]+)(:[^}]*)?\}")


def _routes(service: str, table: list[web.RouteDef]) -> list[tuple[str, str, str]]:
    common = [(service, m, p) for m, p in COMMON_SCOPES]
    return common + [(service, r.method, r.path) for r in table]


ROUTES = [
    *_routes("auth", auth_routes.routes),
    *_routes("ecr", ecr_routes.routes),
    *_routes("storage", storage_routes.routes),
]


def _concrete(path: str) -> str:
    """A path of the route's shape naming nothing that exists."""
    return _PARAM.sub(
        lambda m: "probe.txt" if m.group(2) else f"probe-{uuid.uuid4().hex[:6]}", path
    )


@dataclass
class Matrix:
    urls: dict[str, str]
    apps: dict[str, web.Application]
    tokens: dict[str, str]
    http: aiohttp.ClientSession


@pytest.fixture(scope="module")
async def matrix(
    database_url: str,
    auth_settings,
    auth_server: RunningAuth,
    storage_server: RunningStorage,
    make_user: MakeUser,
) -> AsyncIterator[Matrix]:
    ecr = await start_ecr(busless_config(database_url, auth_settings("ecr-api"), "ecr_scopes"))
    tag = uuid.uuid4().hex[:8]
    # An unapproved user who is no admin: the handlers behind the check change nothing for them.
    tokens = {
        scope: await make_user(f"scoped-{scope.replace(':', '-')}-{tag}", approved=False, scopes=[scope])
        for scope in OPENS
    }  # fmt: skip
    urls = {"auth": auth_server.url, "ecr": ecr.url, "storage": storage_server.url}
    apps = {"auth": auth_server.app, "ecr": ecr.app, "storage": storage_server.app}
    async with aiohttp.ClientSession() as http:
        yield Matrix(urls, apps, tokens, http)
    await ecr.stop()


@pytest.mark.parametrize(("service", "method", "path"), ROUTES, ids=[" ".join(r) for r in ROUTES])
async def test_route_admits_exactly_the_tokens_holding_its_scope(
    matrix: Matrix, service: str, method: str, path: str
) -> None:
    table = matrix.apps[service][SCOPES]
    assert table.declares(method, path), f"{service}: {method} {path} has no entry in SCOPES"
    needs = table.required(method, path)
    wrong = []
    for caller in CALLERS:
        token = matrix.tokens.get(caller)
        headers = {"Authorization": f"sage {token}"} if token else {}
        url = matrix.urls[service] + _concrete(path)
        async with matrix.http.request(method, url, headers=headers, allow_redirects=False) as r:
            body = await r.json(content_type=None) if r.status == 403 else None
        refused = (
            body is not None and body.get("detail") == f"this token's scopes do not include {needs}"
        )
        should_refuse = needs is not None and caller != "anonymous" and needs not in OPENS[caller]
        if refused != should_refuse:
            wrong.append(f"{caller}: {r.status} {body}")
    assert not wrong, f"{method} {path} needs {needs}:\n" + "\n".join(wrong)


# The rule the tables follow, stated on its own: reading needs `X:read`, anything else `X`; in
# auth, users and groups need `auth:admin` and the rest any token. Exceptions are listed.
EXCEPTIONS = {
    ("ecr", "GET", "/api/schema/app.json"): None,  # a public document
    ("ecr", "GET", "/api/registry/access"): "ecr:admin",  # the auth service's question
    ("ecr", "GET", "/api"): None,  # SAGE's root and health answers
    ("ecr", "GET", "/api/healthy"): None,
    ("auth", "GET", "/auth/users/~self"): None,  # oneself (the edge scheduler's login check)
    ("auth", "GET", "/auth/users/{username}"): None,  # oneself; others need auth:admin inside
}


def _rule(service: str, method: str, path: str) -> str | None:
    shape = route_key(method, path)  # trailing-slash twins follow the same rule
    for (s, m, p), scope in EXCEPTIONS.items():
        if s == service and route_key(m, p) == shape:
            return scope
    if (method, path) in COMMON_SCOPES:
        return None
    if service == "auth":
        return "auth:admin" if path.startswith(("/auth/users", "/auth/groups")) else None
    return f"{service}:read" if method == "GET" else service


@pytest.mark.parametrize(("service", "method", "path"), ROUTES, ids=[" ".join(r) for r in ROUTES])
def test_reading_needs_the_read_scope_and_changing_the_use_scope(
    matrix: Matrix, service: str, method: str, path: str
) -> None:
    table = matrix.apps[service][SCOPES]
    assert table.required(method, path) == _rule(service, method, path)


def test_every_route_of_every_service_declares_a_scope(matrix: Matrix) -> None:
    for service, app in matrix.apps.items():
        assert missing_scopes(app, app[SCOPES]) == [], service
    for app in (create_builder(BuilderConfig()), create_profiler(ProfilerConfig())):
        assert missing_scopes(app, app[SCOPES]) == []


def test_the_matrix_tries_every_scope_a_table_names(matrix: Matrix) -> None:
    named = {
        scope
        for module in (auth_routes, ecr_routes, storage_routes)
        for scope in module.SCOPES.values()
        if scope is not None
    }
    assert named <= EVERY
