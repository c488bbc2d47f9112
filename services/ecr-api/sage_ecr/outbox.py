"""Stand-in for `sage_common.bus.enqueue` until the bus lands: an outbox row, same transaction."""

from __future__ import annotations

import uuid

import asyncpg
from sage_common.events import CloudEvent


async def enqueue(conn: asyncpg.Connection, event: CloudEvent) -> None:
    await conn.execute(
        "INSERT INTO outbox (event_id, routing_key, body) VALUES ($1, $2, $3)",
        uuid.UUID(event.id),
        event.routing_key,
        event.model_dump(mode="json"),
    )
