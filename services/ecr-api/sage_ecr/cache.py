"""A per-process cache of the listings schedulers and portals reread, emptied on any change.

The catalogue's triggers `NOTIFY sage_catalogue.<schema>` on commit, whoever wrote, and every
replica LISTENs; a write here also empties it at once (clients read their own writes). A page
computed while the catalogue changed is not kept, and nothing is cached while LISTEN is down.
`docs/adr/0005-app-state-machine.md` explains the trade-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
from aiohttp import web

from sage_common.auth import principal
from sage_common.supervise import Supervised
from sage_common.web import CONFIG, json_text_response, supervise

from .state import LISTING_CACHE

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PING_SECONDS = 5.0  # how often the LISTEN connection is checked
MAX_BACKOFF = 30.0  # the longest wait before reconnecting


class ListingCache:
    """Bounded LRU of response bodies keyed by (viewer, path and query)."""

    def __init__(self, *, max_entries: int = 1024, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.generation = 0
        self.enabled = False
        self._entries: OrderedDict[Any, bytes] = OrderedDict()
        self._bytes = 0

    def get(self, key: Any) -> bytes | None:
        body = self._entries.get(key) if self.enabled else None
        if body is not None:
            self._entries.move_to_end(key)
        return body

    def put(self, key: Any, generation: int, body: bytes) -> None:
        """Keep `body` unless the catalogue changed since `generation` was read."""
        if not self.enabled or generation != self.generation or len(body) > self.max_bytes // 8:
            return
        self._bytes -= len(self._entries.pop(key, b""))
        self._entries[key] = body
        self._bytes += len(body)
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            _, dropped = self._entries.popitem(last=False)
            self._bytes -= len(dropped)

    def invalidate(self, *_: object) -> None:
        self.generation += 1
        self._entries.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)


def cached_listing(handler: Handler) -> Handler:
    """Serve a listing from the cache for the same viewer and query; fill it on a miss."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        cache = request.app[LISTING_CACHE]
        who = principal(request)
        viewer = None
        if who is not None:
            viewer = (who.username, tuple(sorted(who.groups)), who.is_admin, who.client_id)
        key = (viewer, request.path_qs)
        body = cache.get(key)
        if body is not None:
            return json_text_response(body)
        generation = cache.generation
        response = await handler(request)
        if response.status == 200 and isinstance(response, web.Response) and response.body:
            cache.put(key, generation, bytes(response.body))  # type: ignore[arg-type]
        return response

    return wrapper


@web.middleware
async def invalidate_on_write(request: web.Request, handler: Handler) -> web.StreamResponse:
    """After any request that may have changed the catalogue here, empty this process's cache."""
    try:
        return await handler(request)
    finally:
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            request.app[LISTING_CACHE].invalidate()


def listener_name(schema: str) -> str:
    """The listener's application_name in pg_stat_activity (operators and tests find it by it)."""
    return f"sage-{schema}-catalogue-listener"


def listener_context(max_entries: int):  # type: ignore[no-untyped-def]
    """Cleanup context: the cache, and the LISTEN connection that keeps it honest."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        cache = ListingCache(max_entries=max_entries)
        app[LISTING_CACHE] = cache
        if max_entries <= 0:
            yield  # caching off: the cache stays disabled
            return
        config = app[CONFIG]
        dsn = config.database_url.get_secret_value()
        listen = Supervised("ecr-catalogue-listener", lambda: _listen(dsn, config.db_schema, cache))
        listener = supervise(app, listen)
        yield
        await listener.stop()

    return ctx


async def _listen(dsn: str, schema: str, cache: ListingCache) -> None:
    backoff = 0.5
    while True:
        try:
            await _listen_once(dsn, schema, cache)
            backoff = 0.5
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            log.warning(
                "catalogue listener down; listings are not cached until it is back",
                extra={"error": type(exc).__name__},
            )
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, MAX_BACKOFF)


async def _listen_once(dsn: str, schema: str, cache: ListingCache) -> None:
    """Cache while one LISTEN connection lives; stop caching the moment it is lost."""
    conn = await asyncpg.connect(
        dsn, timeout=5, server_settings={"application_name": listener_name(schema)}
    )
    lost = asyncio.Event()
    try:
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(f"sage_catalogue.{schema}", cache.invalidate)
        cache.invalidate()
        cache.enabled = True
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), PING_SECONDS)
            if not lost.is_set():
                await conn.execute("SELECT 1", timeout=PING_SECONDS)
    finally:
        cache.enabled = False
        cache.invalidate()
        if not conn.is_closed():
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)
