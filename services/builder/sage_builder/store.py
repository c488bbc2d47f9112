"""SQL of the builder: each build's one row and result (cancels: `sage_common.work`)."""

from __future__ import annotations

from typing import Literal

import asyncpg

from sage_common.schemas import BuildDone
from sage_common.work import request_cancel

Claim = Literal["new", "resumed", "finished"]


async def claim(conn: asyncpg.Connection, build_id: str, app_id: str) -> Claim:
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


async def finish(conn: asyncpg.Connection, done: BuildDone) -> bool:
    """Record the one result of a running build; False if another attempt recorded it first."""
    found = await conn.fetchval(
        """UPDATE builds SET status = $2, result = $3::text::jsonb, finished_at = now()
           WHERE build_id = $1 AND status = 'running' RETURNING true""",
        done.build_id,
        done.status,
        done.model_dump_json(),
    )
    return bool(found)


async def supersede(conn: asyncpg.Connection, app_id: str, build_id: str) -> list[str]:
    """Ask every other running build of `app_id` to stop for `build_id`; return their ids."""
    rows = await conn.fetch(
        "SELECT build_id FROM builds WHERE app_id = $1 AND status = 'running' AND build_id <> $2",
        app_id,
        build_id,
    )
    older = [r["build_id"] for r in rows]
    for old in older:
        await request_cancel(conn, old, app_id, f"superseded by build {build_id}", None)
    return older
