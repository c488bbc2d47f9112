"""SQL of the builder: each build's one row and result (cancels: `sage_common.work`).

`Store` is what the use cases get; `MemoryStore` (store_memory.py) is its fake for unit tests.
Every method but `transaction` runs on the caller's connection, inside its transaction (the
`WorkConsumer`'s, or one from `transaction`), so a change and its events commit together.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg

from sage_common.bus import enqueue
from sage_common.events import CloudEvent
from sage_common.schemas import BuildDone
from sage_common.work import request_cancel

from .records import Claim
from .store_images import ImageStore


class Store(ImageStore):
    """The builder's tables; `ImageStore` holds the queries of image deletions."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection in a transaction, committed when the block ends without an error."""
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn

    async def enqueue(self, conn: asyncpg.Connection, event: CloudEvent) -> None:
        """Queue `event` in the outbox, to be published once the transaction commits."""
        await enqueue(conn, event)

    async def claim(self, conn: asyncpg.Connection, build_id: str, app_id: str) -> Claim:
        """Start `build_id`: new, resumed after a lost attempt (redelivery), or already finished."""
        row = await conn.fetchrow(
            """INSERT INTO builds (build_id, app_id) VALUES ($1, $2)
               ON CONFLICT (build_id) DO UPDATE SET attempts = builds.attempts + 1
                   WHERE builds.status = 'running'
               RETURNING attempts""",
            build_id,
            app_id,
        )
        if row is None:
            return "finished"
        return "new" if row["attempts"] == 1 else "resumed"

    async def finish(self, conn: asyncpg.Connection, done: BuildDone) -> bool:
        """Record the one result of a running build; False if another attempt recorded it first."""
        found = await conn.fetchval(
            """UPDATE builds SET status = $2, result = $3::text::jsonb, finished_at = now()
               WHERE build_id = $1 AND status = 'running' RETURNING true""",
            done.build_id,
            done.status,
            done.model_dump_json(),
        )
        return bool(found)

    async def supersede(self, conn: asyncpg.Connection, app_id: str, build_id: str) -> list[str]:
        """Ask every other running build of `app_id` to stop for `build_id`; return their ids."""
        rows = await conn.fetch(
            """SELECT build_id FROM builds
               WHERE app_id = $1 AND status = 'running' AND build_id <> $2""",
            app_id,
            build_id,
        )
        older = [r["build_id"] for r in rows]
        for old in older:
            await request_cancel(conn, old, app_id, f"superseded by build {build_id}", None)
        return older
