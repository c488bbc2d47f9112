"""SQL of the profiler's own schema: the profiles it produced, one per build (the builds the ECR
cancelled: `sage_common.work`).

`Store` is what the use cases get; `MemoryStore` (store_memory.py) is its fake for unit tests.
Its methods run on the caller's connection, inside the `WorkConsumer`'s transaction.
"""

from __future__ import annotations

import uuid

import asyncpg

from sage_common.bus import enqueue
from sage_common.events import CloudEvent
from sage_common.schemas import ProfileDone


class Store:
    """The profiler's tables, one method per statement."""

    async def enqueue(self, conn: asyncpg.Connection, event: CloudEvent) -> None:
        """Queue `event` in the outbox, to be published once the transaction commits."""
        await enqueue(conn, event)

    async def has_profile(self, conn: asyncpg.Connection, build_id: str) -> bool:
        """Whether this build was profiled already (a redelivery, or a second build.done)."""
        found = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM profiles WHERE build_id = $1)", build_id
        )
        return bool(found)

    async def save_profile(self, conn: asyncpg.Connection, profile: ProfileDone) -> bool:
        """Keep `profile`; False when this build already has one (then nothing is written)."""
        inserted = await conn.fetchval(
            """INSERT INTO profiles
                   (profile_id, build_id, app_id, status, reason, result, started_at)
               VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7)
               ON CONFLICT DO NOTHING RETURNING true""",
            uuid.UUID(profile.profile_id),
            profile.build_id,
            profile.app_id,
            profile.status,
            profile.reason,
            profile.model_dump_json(),
            profile.started_at,
        )
        return bool(inserted)
