"""SQL for the images of deleted versions: what each build pushed, and deletions not yet confirmed."""

from __future__ import annotations

import uuid

from .records import Build, Deletion
from .store_catalogue import OnConnection


class ImagesSql(OnConnection):
    """What a version's builds pushed, and the deletions the builder has yet to confirm."""

    async def pushed_builds(self, app_id: int) -> list[Build]:
        """Every build of the version, oldest first; `done` says what each pushed."""
        rows = await self.conn.fetch(
            "SELECT * FROM builds WHERE app_id = $1 ORDER BY build_number", app_id
        )
        return [Build(**r) for r in rows]

    async def add_deletion(
        self,
        event_id: uuid.UUID,
        namespace: str,
        name: str,
        version: str,
        owner: str,
        requested_by: str,
    ) -> None:
        await self.conn.execute(
            """INSERT INTO image_deletions (event_id, namespace, name, version, owner, requested_by)
               VALUES ($1, $2, $3, $4, $5, $6)""",
            event_id,
            namespace,
            name,
            version,
            owner,
            requested_by,
        )

    async def pending_deletions(
        self, namespace: str, name: str | None = None, version: str | None = None
    ) -> int:
        """Unconfirmed deletions under the namespace (the repository, the version when given)."""
        return int(
            await self.conn.fetchval(
                """SELECT count(*) FROM image_deletions
                   WHERE namespace = $1 AND ($2::text IS NULL OR name = $2)
                     AND ($3::text IS NULL OR version = $3)""",
                namespace,
                name,
                version,
            )
        )

    async def confirm_deletion(self, event_id: uuid.UUID, app_id: str) -> Deletion | None:
        """Drop the deletion `event_id` of `app_id`; the row it was, or None when there is none."""
        row = await self.conn.fetchrow(
            """DELETE FROM image_deletions
               WHERE event_id = $1 AND namespace || '/' || name || ':' || version = $2
               RETURNING *""",
            event_id,
            app_id,
        )
        return Deletion(**row) if row else None
