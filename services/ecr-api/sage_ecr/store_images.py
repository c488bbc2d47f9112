"""SQL for the images of deleted versions: what each build pushed, and deletions not yet confirmed."""

from __future__ import annotations

import uuid
from typing import Any, TypeAlias

import asyncpg

Conn: TypeAlias = asyncpg.Connection


async def builds_of(conn: Conn, app_id: int) -> list[dict[str, Any]]:
    """Every build of the version, oldest first, with its `build.done` data (or None)."""
    rows = await conn.fetch(
        "SELECT build_id, done FROM builds WHERE app_id = $1 ORDER BY build_number", app_id
    )
    return [dict(r) for r in rows]


async def add_pending(
    conn: Conn,
    event_id: uuid.UUID,
    namespace: str,
    name: str,
    version: str,
    owner: str,
    requested_by: str,
) -> None:
    await conn.execute(
        """INSERT INTO image_deletions (event_id, namespace, name, version, owner, requested_by)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        event_id,
        namespace,
        name,
        version,
        owner,
        requested_by,
    )


async def pending(
    conn: Conn, namespace: str, name: str | None = None, version: str | None = None
) -> int:
    """Unconfirmed deletions under the namespace (the repository, the version when given)."""
    return int(
        await conn.fetchval(
            """SELECT count(*) FROM image_deletions
               WHERE namespace = $1 AND ($2::text IS NULL OR name = $2)
                 AND ($3::text IS NULL OR version = $3)""",
            namespace,
            name,
            version,
        )
    )


async def confirm(conn: Conn, event_id: uuid.UUID, app_id: str) -> dict[str, Any] | None:
    """Drop the deletion `event_id` of `app_id`; the row it was, or None when there is none."""
    row = await conn.fetchrow(
        """DELETE FROM image_deletions
           WHERE event_id = $1 AND namespace || '/' || name || ':' || version = $2
           RETURNING *""",
        event_id,
        app_id,
    )
    return dict(row) if row else None
