"""Who is calling: the Authorization header, token introspection (RFC 7662) and the principal.

Every service but auth asks the auth service about a token over HTTP and caches the answer by the
token's SHA-256 (never the token itself) for a short TTL; unknown tokens are cached more briefly.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from pydantic import BaseModel, Field

from .errors import Unauthorized, Unavailable
from .scopes import RouteScopes, holds

log = logging.getLogger(__name__)

MAX_TOKEN_LENGTH = 512


class Principal(BaseModel):
    """The caller as the auth service describes it."""

    username: str
    groups: list[str] = Field(default_factory=list)
    is_admin: bool = False
    is_approved: bool = False
    scopes: list[str] = Field(default_factory=list)
    client_id: str | None = None  # set when the caller is a service account, not a person
    exp: int | None = None

    @property
    def is_service(self) -> bool:
        return self.client_id is not None and self.username == f"service:{self.client_id}"

    def has_scope(self, scope: str) -> bool:
        """Whether the token holds `scope` (`all` holds all, `X:admin` holds `X`, `X` `X:read`)."""
        return holds(self.scopes, scope)


class Introspector(Protocol):
    async def introspect(self, token: str) -> Principal | None: ...


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_authorization(header: str) -> str:
    """The token in `sage <token>`, `Bearer <token>` or Basic `user:<token>`; 401 if malformed."""
    scheme, _, credentials = header.strip().partition(" ")
    credentials = credentials.strip()
    scheme = scheme.lower()
    if scheme == "basic" and credentials:
        try:
            decoded = base64.b64decode(credentials, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthorized("malformed Authorization header") from None
        _, sep, credentials = decoded.partition(":")
        if not sep:
            raise Unauthorized("malformed Authorization header")
    elif scheme not in ("sage", "bearer"):
        raise Unauthorized("malformed Authorization header: use 'sage <token>'")
    if (
        not credentials
        or len(credentials) > MAX_TOKEN_LENGTH
        or not credentials.isascii()
        or not credentials.isprintable()
        or " " in credentials
    ):
        raise Unauthorized("malformed Authorization header: use 'sage <token>'")
    return credentials


class IntrospectionClient:
    """RFC 7662 client of the auth service, with a bounded TTL cache and single-flight lookups."""

    def __init__(
        self,
        url: str,
        client_id: str,
        client_secret: str,
        *,
        ttl: float = 10.0,
        negative_ttl: float = 2.0,
        timeout: float = 3.0,
        max_entries: int = 10_000,
    ) -> None:
        self._url = url.rstrip("/") + "/auth/token_info"
        self._headers = {"Authorization": aiohttp.encode_basic_auth(client_id, client_secret)}
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max = max_entries
        self._cache: OrderedDict[str, tuple[float, Principal | None]] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[Principal | None]] = {}
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def introspect(self, token: str) -> Principal | None:
        key = token_hash(token)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        if key in self._inflight:
            return await asyncio.shield(self._inflight[key])
        future: asyncio.Future[Principal | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            principal = await self._ask(token)
            ttl = self._ttl if principal else self._negative_ttl
            if principal and principal.exp:
                ttl = max(0.0, min(ttl, principal.exp - time.time()))
            self._remember(key, now + ttl, principal)
            future.set_result(principal)
            return principal
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters (if any) re-raise it themselves
            raise
        finally:
            del self._inflight[key]

    def _remember(self, key: str, until: float, principal: Principal | None) -> None:
        self._cache[key] = (until, principal)
        self._cache.move_to_end(key)
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)

    async def _ask(self, token: str) -> Principal | None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(
                self._url, data={"token": token}, headers=self._headers
            ) as resp:
                if resp.status != 200:
                    log.error("token introspection answered %s", resp.status)
                    raise Unavailable("the auth service cannot check tokens right now")
                body = await resp.json()
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("token introspection failed: %s", type(exc).__name__)
            raise Unavailable("the auth service is unreachable") from None
        if not body.get("active"):
            return None
        return Principal(
            username=body["username"],
            groups=body.get("groups", []),
            is_admin=body.get("is_admin", False),
            is_approved=body.get("is_approved", False),
            scopes=(body.get("scope") or "").split(),
            client_id=body.get("client_id"),
            exp=body.get("exp"),
        )


PRINCIPAL_KEY: web.RequestKey[Principal | None] = web.RequestKey("sage.principal")


def auth_middleware(
    introspector: Callable[[], Introspector],
    scopes: RouteScopes | None = None,
) -> Middleware:
    """Put the caller's principal (None: anonymous) on the request; 401 for bad tokens. With
    `scopes`, 403 unless the token holds its route's scope, and admin only with `scopes.admin`."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        header = request.headers.get("Authorization")
        principal = None
        if header is not None:
            token = parse_authorization(header)
            principal = await introspector().introspect(token)
            if principal is None:
                raise Unauthorized("invalid, expired or revoked token")
            if scopes is not None:
                scopes.check(request, principal.scopes)
                if scopes.admin and principal.is_admin and not principal.has_scope(scopes.admin):
                    principal = principal.model_copy(update={"is_admin": False})
        request[PRINCIPAL_KEY] = principal
        return await handler(request)

    return middleware


def principal(request: web.Request) -> Principal | None:
    """The caller, or None when anonymous."""
    return request.get(PRINCIPAL_KEY)


def require_principal(request: web.Request) -> Principal:
    """The caller; 401 when anonymous."""
    who = principal(request)
    if who is None:
        raise Unauthorized("this needs a token: send 'Authorization: sage <token>'")
    return who
