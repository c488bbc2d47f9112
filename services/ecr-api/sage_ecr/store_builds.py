"""SQL for the builds of app versions and their state history."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from .records import Build, HistoryEntry
from .store_catalogue import OnConnection


class BuildsSql(OnConnection):
    """Builds, what the builder and the profiler said of them, and the versions' history."""

    # ---- builds

    async def insert_build(self, app_id: int, build_number: int, requested_by: str) -> Build:
        row = await self.conn.fetchrow(
            """INSERT INTO builds (build_id, app_id, build_number, requested_by) VALUES ($1, $2, $3, $4)
               RETURNING *""",
            uuid.uuid4(),
            app_id,
            build_number,
            requested_by,
        )
        assert row is not None
        return Build(**row)

    async def get_build(self, build_id: uuid.UUID | None) -> Build | None:
        if build_id is None:
            return None
        row = await self.conn.fetchrow("SELECT * FROM builds WHERE build_id = $1", build_id)
        return Build(**row) if row else None

    async def get_build_by_number(self, app_id: int, build_number: int) -> Build | None:
        row = await self.conn.fetchrow(
            "SELECT * FROM builds WHERE app_id = $1 AND build_number = $2", app_id, build_number
        )
        return Build(**row) if row else None

    async def _record_once(self, build_id: uuid.UUID, event: str, sets: str, *values: Any) -> bool:
        """Set `sets` on the build unless its `event` column is set already; whether it was not."""
        status = await self.conn.execute(
            f"UPDATE builds SET {sets} WHERE build_id = $1 AND {event} IS NULL", build_id, *values
        )
        return status.endswith(" 1")

    async def record_started(
        self, build_id: uuid.UUID, at: datetime, event_id: str, log_location: str | None = None
    ) -> bool:
        """Note that the build started, and where its live log is; False when that was known."""
        sets = "started_at = $2, started_event = $3, log_location = $4"
        return await self._record_once(build_id, "started_event", sets, at, event_id, log_location)

    async def record_done(
        self, build_id: uuid.UUID, status: str, data: dict[str, Any], event_id: str
    ) -> bool:
        sets = "status = $2, done = $3, done_event = $4, finished_at = now()"
        return await self._record_once(build_id, "done_event", sets, status, data, event_id)

    async def record_profile(
        self, build_id: uuid.UUID, status: str, data: dict[str, Any], event_id: str
    ) -> bool:
        sets = "profile_status = $2, profile = $3, profile_event = $4, profiled_at = now()"
        return await self._record_once(build_id, "profile_event", sets, status, data, event_id)

    # ---- history

    async def add_history(
        self,
        app_id: int,
        source: str | None,
        target: str,
        cause: str,
        *,
        event_id: str | None = None,
        build_number: int | None = None,
        actor: str | None = None,
    ) -> None:
        await self.conn.execute(
            """INSERT INTO app_history
                   (app_id, from_state, to_state, cause, event_id, build_number, actor)
               VALUES ($1, $2, $3, $4, $5, $6, $7)""",
            app_id,
            source,
            target,
            cause,
            event_id,
            build_number,
            actor,
        )

    async def history(self, app_id: int) -> list[HistoryEntry]:
        rows = await self.conn.fetch(
            "SELECT * FROM app_history WHERE app_id = $1 ORDER BY id", app_id
        )
        return [HistoryEntry(**r) for r in rows]
