"""Token checks inside the auth service itself: straight to the database, no HTTP round trip.

`LocalIntrospector` implements `sage_common.auth.Introspector`, so the shared middleware puts the
same `Principal` on requests here as everywhere else. Its cache is as short-lived as the
`IntrospectionClient`'s, and forgets a token revoked through this process at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from datetime import UTC, datetime
from uuid import UUID

from sage_common.auth import MAX_TOKEN_LENGTH, Principal, token_hash
from sage_common.config import is_known_default

from . import service
from .config import Config
from .store import Store

log = logging.getLogger(__name__)


class UsageRecorder:
    """When tokens were last used, kept in memory and written in batches, never per request."""

    def __init__(self) -> None:
        self._seen: dict[UUID, datetime] = {}

    def record(self, token_id: UUID) -> None:
        self._seen[token_id] = datetime.now(UTC)

    async def flush(self, store: Store) -> None:
        batch, self._seen = self._seen, {}
        await store.touch_tokens(list(batch.items()))

    async def run(self, store: Store, every: float) -> None:
        """Flush every `every` seconds until cancelled, then once more."""
        try:
            while True:
                await asyncio.sleep(every)
                try:
                    await self.flush(store)
                except Exception as exc:  # noqa: BLE001 - usage times are best effort
                    log.warning("could not record token use: %s", type(exc).__name__)
        finally:
            await asyncio.shield(self.flush(store))


class LocalIntrospector:
    """Look tokens up in this service's own database; service client secrets count as tokens."""

    def __init__(self, config: Config, *, max_entries: int = 10_000) -> None:
        # A service secret that is empty or a known placeholder (change-me-*) is no credential.
        self._services = {
            token_hash(secret.get_secret_value()): client_id
            for client_id, secret in config.service_clients.items()
            if not is_known_default(secret.get_secret_value())
        }
        self._ttl = config.introspection_ttl
        self._negative_ttl = config.introspection_negative_ttl
        self._max = max_entries
        self._cache: OrderedDict[str, tuple[float, Principal | None]] = OrderedDict()
        self._store: Store | None = None
        self.usage = UsageRecorder()

    def bind(self, store: Store) -> None:
        self._store = store

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the introspector is used before the database is open")
        return self._store

    async def lookup(self, token: str) -> Principal | None:
        """The principal behind `token` as the database says now (no cache)."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        hashed = token_hash(token)
        client_id = self._services.get(hashed)
        if client_id is not None:
            return service.service_principal(client_id)
        found = await self.store.lookup_token(hashed)
        if found is None:
            return None
        principal, token_id = found
        self.usage.record(token_id)
        return principal

    async def introspect(self, token: str) -> Principal | None:
        """Like `lookup`, cached for the introspection TTL (shorter for unknown tokens)."""
        key = token_hash(token)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        principal = await self.lookup(token)
        ttl = self._ttl if principal is not None else self._negative_ttl
        if principal is not None and principal.exp is not None:
            ttl = max(0.0, min(ttl, principal.exp - time.time()))
        self._cache[key] = (now + ttl, principal)
        self._cache.move_to_end(key)
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return principal

    def forget(self, hashed: str) -> None:
        """Drop a token (by hash) from the cache, e.g. right after it was revoked here."""
        self._cache.pop(hashed, None)

    def forget_user(self, username: str) -> None:
        """Drop a user's cached tokens, e.g. after their flags changed here."""
        stale = [k for k, (_, who) in self._cache.items() if who and who.username == username]
        for key in stale:
            del self._cache[key]
