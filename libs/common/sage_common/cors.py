"""CORS for browser apps on other origins (the SAGE portal), driven by `ServiceConfig.cors_origins`.

A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered here, before
routing and token checks matter; every other answer to an allowed origin gets its
`Access-Control-Allow-Origin` just before its headers go out (streamed and error answers too).
Credentials (cookies) are never allowed: SAGE's clients send `Authorization: sage <token>`, which
a page can only send when it holds the token.

Origins are exact (`https://portal.sagecontinuum.org`) or patterns where `*` stands for host or port
characters (`http://localhost:*`, `https://*.sagecontinuum.org`); a lone `*` allows every origin.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

ALLOW_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
# Always allowed request headers, besides the CORS-safelisted ones a browser sends unasked.
ALLOW_HEADERS = ("Authorization", "Content-Type", "Accept", "X-Request-ID", "Range")
# Response headers a page may read, besides the safelisted ones (Content-Type, Content-Length...).
EXPOSE_HEADERS = (
    "X-Request-ID",
    "Content-Disposition",
    "Content-Range",
    "Location",
    "ETag",
    "Retry-After",
    "WWW-Authenticate",
    "X-Build-Complete",
    "X-Build-Id",
    "X-Build-Number",
    "X-Log-Offset",
    "X-Log-Next-Offset",
    "X-Log-Size",
)
MAX_AGE_SECONDS = 600
_TOKEN_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")


class OriginPolicy:
    """Which origins may read answers: exact origins and `*` patterns, compiled once."""

    def __init__(self, origins: Iterable[str]) -> None:
        self.origins = [o.strip().rstrip("/") for o in origins if o.strip()]
        self.any = "*" in self.origins
        self._patterns = [_compile(o) for o in self.origins if o != "*"]

    def __bool__(self) -> bool:
        return bool(self.origins)

    def allows(self, origin: str | None) -> bool:
        if not origin or origin == "null" or len(origin) > 512:
            return False
        return self.any or any(p.fullmatch(origin) for p in self._patterns)


CORS_POLICY = web.AppKey("cors_policy", OriginPolicy)


def _compile(pattern: str) -> re.Pattern[str]:
    """`*` matches characters of a host name or port, never `/`, `:` before a port, `@` or `?`."""
    return re.compile("[A-Za-z0-9.-]*".join(re.escape(part) for part in pattern.split("*")))


def _add_vary(response: web.StreamResponse) -> None:
    vary = response.headers.get(hdrs.VARY, "")
    if "origin" not in vary.lower():
        response.headers[hdrs.VARY] = f"{vary}, Origin" if vary else "Origin"


def _requested_headers(request: web.Request) -> str:
    asked = request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_HEADERS, "")
    names = {h.lower(): h for h in ALLOW_HEADERS}
    for item in asked.split(","):
        item = item.strip()
        if item and _TOKEN_RE.match(item):
            names.setdefault(item.lower(), item)
    return ", ".join(names.values())


def cors_middleware(policy: OriginPolicy) -> Middleware:
    """Answer preflights from allowed origins with 204 (403 for others); pass the rest on."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not (
            request.method == hdrs.METH_OPTIONS
            and hdrs.ORIGIN in request.headers
            and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers
        ):
            return await handler(request)
        if not policy.allows(request.headers[hdrs.ORIGIN]):
            response = web.Response(status=403, text="this origin may not call this service")
            _add_vary(response)
            return response
        return web.Response(
            status=204,
            headers={
                hdrs.ACCESS_CONTROL_ALLOW_METHODS: ALLOW_METHODS,
                hdrs.ACCESS_CONTROL_ALLOW_HEADERS: _requested_headers(request),
                hdrs.ACCESS_CONTROL_MAX_AGE: str(MAX_AGE_SECONDS),
            },
        )

    return middleware


async def _on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    policy = request.app[CORS_POLICY]
    _add_vary(response)
    origin = request.headers.get(hdrs.ORIGIN)
    if policy.allows(origin):
        assert origin is not None
        # Set, never added: an answer carries one Access-Control-Allow-Origin whatever wrote it.
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
        if request.method != hdrs.METH_OPTIONS:
            response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = ", ".join(EXPOSE_HEADERS)


def enable_cors(app: web.Application, origins: Iterable[str]) -> None:
    """Install CORS on `app` for `origins` (none: CORS off), before it starts. Its middleware goes
    first, so a preflight is answered before any other middleware (auth included) sees it."""
    policy = OriginPolicy(origins)
    if not policy:
        return
    app[CORS_POLICY] = policy
    app.middlewares.insert(0, cors_middleware(policy))
    app.on_response_prepare.append(_on_prepare)
