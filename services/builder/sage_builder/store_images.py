"""SQL for deleting the images of deleted app versions: fencing their builds, what they pushed."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from sage_common.work import request_cancel

from .records import Pushed


class ImageStore:
    """The queries of image deletions: fencing a deleted version's builds, what they pushed."""

    async def fence(
        self,
        conn: asyncpg.Connection,
        app_id: str,
        build_ids: Sequence[str],
        event_id: str,
        requested_by: str,
    ) -> None:
        """Mark `build_ids` deleted and cancelled, so none of them builds or pushes from now on;
        a build this builder knows under another app id is left alone."""
        reason = f"app deleted by {requested_by}"
        others = await conn.fetch(
            "SELECT build_id FROM builds WHERE build_id = ANY($1::text[]) AND app_id <> $2",
            list(build_ids),
            app_id,
        )
        foreign = {r["build_id"] for r in others}
        for build_id in (b for b in build_ids if b not in foreign):
            await conn.execute(
                """INSERT INTO deleted_builds (build_id, app_id, event_id) VALUES ($1, $2, $3)
                   ON CONFLICT (build_id) DO NOTHING""",
                build_id,
                app_id,
                uuid.UUID(event_id),
            )
            await request_cancel(conn, build_id, app_id, reason, requested_by)

    async def running(self, conn: asyncpg.Connection, build_ids: Sequence[str]) -> list[str]:
        """Those of `build_ids` still building here (or on another replica)."""
        rows = await conn.fetch(
            "SELECT build_id FROM builds WHERE build_id = ANY($1::text[]) AND status = 'running'",
            list(build_ids),
        )
        return [r["build_id"] for r in rows]

    async def pushed(
        self, conn: asyncpg.Connection, app_id: str, build_ids: Sequence[str]
    ) -> Pushed:
        """The index and manifest digests that the successful ones of `build_ids` reported."""
        rows = await conn.fetch(
            """SELECT result->>'index_digest' AS index_digest,
                      ARRAY(SELECT i->>'digest' FROM jsonb_array_elements(result->'images') i)
                          AS manifests
               FROM builds
               WHERE build_id = ANY($1::text[]) AND app_id = $2
                 AND status = 'success' AND result IS NOT NULL
               ORDER BY finished_at""",
            list(build_ids),
            app_id,
        )
        indexes = tuple(r["index_digest"] for r in rows if r["index_digest"])
        return Pushed(indexes, tuple(d for r in rows for d in r["manifests"] if d))

    async def in_use(
        self, conn: asyncpg.Connection, repository: str, app_id: str, digests: Sequence[str]
    ) -> list[str]:
        """Those of `digests` that a live build of another version of `repository` also pushed."""
        rows = await conn.fetch(
            """SELECT d FROM unnest($3::text[]) AS d
               WHERE EXISTS (
                   SELECT 1 FROM builds b
                   WHERE left(b.app_id, length($1) + 1) = $1 || ':' AND b.app_id <> $2
                     AND b.status = 'success' AND b.result IS NOT NULL
                     AND NOT EXISTS (SELECT 1 FROM deleted_builds x WHERE x.build_id = b.build_id)
                     AND (b.result->>'index_digest' = d
                          OR b.result->'images' @> jsonb_build_array(jsonb_build_object('digest', d))))""",
            repository,
            app_id,
            list(digests),
        )
        return [r["d"] for r in rows]

    async def lock_repository(self, conn: asyncpg.Connection, repository: str) -> None:
        """Serialise deletions in `repository` until the transaction ends, so that of two versions
        sharing a digest, the later deletion sees the earlier one's fence and deletes it."""
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1))", f"sage-builder-images:{repository}"
        )

    async def building_in(
        self, conn: asyncpg.Connection, repository: str, app_id: str
    ) -> list[str]:
        """Other versions of `repository` building now: what they push may share our digests."""
        rows = await conn.fetch(
            """SELECT DISTINCT app_id FROM builds
               WHERE left(app_id, length($1) + 1) = $1 || ':' AND app_id <> $2
                 AND status = 'running'
                 AND NOT EXISTS (SELECT 1 FROM deleted_builds x WHERE x.build_id = builds.build_id)""",
            repository,
            app_id,
        )
        return [r["app_id"] for r in rows]
