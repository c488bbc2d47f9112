"""The store the ECR's use cases take: a session per unit of work, its SQL split by topic.

`store.transaction()` gives a session whose writes and queued events (the outbox) commit together
or not at all; `store.read()` one outside any transaction; `store_memory.py` is the fake.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

import asyncpg

from sage_common.bus import enqueue
from sage_common.events import CloudEvent

from .store_apps import AppsSql
from .store_builds import BuildsSql
from .store_catalogue import CatalogueSql
from .store_images import ImagesSql
from .store_listing import ListingSql
from .store_meta import MetaSql


class PgSession(CatalogueSql, AppsSql, ListingSql, BuildsSql, ImagesSql, MetaSql):
    """What a use case may read and write in one unit of work, one `*Sql` class per topic, on one
    Postgres connection whose transaction the caller holds."""

    async def enqueue(self, event: CloudEvent) -> None:
        """Queue an event in this unit of work; it is published only if the work commits."""
        await enqueue(self.conn, event)


# The type use cases see; the fake (`store_memory.MemorySession`) subclasses it and overrides
# every method, which `services/ecr-api/tests` checks.
Session = PgSession


class Store(Protocol):
    def read(self) -> AbstractAsyncContextManager[Session]: ...
    def transaction(self) -> AbstractAsyncContextManager[Session]: ...
    def joined(self, conn: asyncpg.Connection) -> Session:
        """The session on a connection whose transaction the caller holds (a consumer's, which
        the bus opened to record the event id)."""


@dataclass
class PgStore:
    pool: asyncpg.Pool

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[Session]:
        async with self.pool.acquire() as conn:
            yield PgSession(conn)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Session]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield PgSession(conn)

    def joined(self, conn: asyncpg.Connection) -> Session:
        return PgSession(conn)
