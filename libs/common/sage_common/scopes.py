"""Token scopes: the scope each route needs, checked for every request that carries a token.

Each service declares one table next to its route table, `{(method, path pattern): scope}`, and
`create_service_app` hands it to the auth middleware. A route missing from the table refuses every
token (fail closed); `missing_scopes(app, table)` lists such routes for the tests. Paths match on
their shape: a trailing slash and the names of `{parameters}` do not matter, so `/api/apps/` is
`/api/apps` and `{ns}` is `{namespace}`. Anonymous requests carry no scopes and pass; the handler
decides what an anonymous caller may do, as before.

Scopes nest: `all` holds every scope, `X:admin` holds `X`, and `X` holds `X:read`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final

from aiohttp import web

from .errors import Forbidden

ALL: Final = "all"
NO_SCOPE: Final = None  # any token may call the route; the handler decides who may do what
RouteKey = tuple[str, str]  # (METHOD, path pattern)
ScopeTable = Mapping[RouteKey, str | None]

_PARAM = re.compile(r"\{[^}]*\}")
# Routes every service has (sage_common.web); anyone may call them, with or without a token.
COMMON_SCOPES: Final[ScopeTable] = {
    ("GET", "/healthz"): NO_SCOPE,
    ("GET", "/readyz"): NO_SCOPE,
    ("GET", "/metrics"): NO_SCOPE,
    ("GET", "/openapi.json"): NO_SCOPE,
}


def holds(scopes: Iterable[str], wanted: str) -> bool:
    """Whether `scopes` hold `wanted`: itself, `all`, or a wider scope of its family."""
    base = wanted.removesuffix(":read")
    holders = {ALL, wanted, base}
    if not base.endswith(":admin"):
        holders.add(base + ":admin")
    return not holders.isdisjoint(scopes)


def route_key(method: str, path: str) -> RouteKey:
    """The key a route is declared under: HEAD as GET, no trailing slash, parameters unnamed."""
    method = method.upper()
    if method == "HEAD":
        method = "GET"
    path = _PARAM.sub("{}", path)
    return method, path.rstrip("/") or "/"


class RouteScopes:
    """A service's table, normalised for lookups, with the scope that unlocks admin powers."""

    def __init__(self, table: ScopeTable, *, admin: str | None = None) -> None:
        self.admin = admin
        self._table = {route_key(m, p): s for (m, p), s in {**COMMON_SCOPES, **table}.items()}

    def _key(self, method: str, path: str) -> RouteKey | None:
        keys = (route_key(method, path), route_key("*", path))
        return next((key for key in keys if key in self._table), None)

    def declares(self, method: str, path: str) -> bool:
        return self._key(method, path) is not None

    def required(self, method: str, path: str) -> str | None:
        """The scope the route needs (None: any token); KeyError when the table lacks it."""
        key = self._key(method, path)
        if key is None:
            raise KeyError((method, path))
        return self._table[key]

    def check(self, request: web.Request, scopes: Iterable[str]) -> None:
        """403 unless a token with `scopes` may call the route `request` matched."""
        resource = request.match_info.route.resource
        if resource is None or request.method == "OPTIONS":
            return  # no route matched (404/405 follow), or a CORS preflight
        path = resource.canonical
        if not self.declares(request.method, path):
            raise Forbidden(f"no token scope is declared for {request.method} {path}")
        wanted = self.required(request.method, path)
        if wanted is not None and not holds(scopes, wanted):
            raise Forbidden(f"this token's scopes do not include {wanted}")


def missing_scopes(app: web.Application, scopes: RouteScopes) -> list[RouteKey]:
    """The app's routes the table does not declare (each refuses every token)."""
    return [
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
        and route.method not in ("HEAD", "OPTIONS")
        and not scopes.declares(route.method, route.resource.canonical)
    ]
