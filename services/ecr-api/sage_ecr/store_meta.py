"""SQL for an app version's ecr-meta files (the rows; the bytes live in the builder's bucket)."""

from __future__ import annotations

import uuid

from .records import MetaFileRow
from .store_catalogue import OnConnection

# The columns of a `MetaFileRow` (read back by name).
_FILE = "file_name, kind, content_type, size, sha256, location, build_id"


class MetaSql(OnConnection):
    """The ecr-meta files recorded for each version."""

    async def replace_meta_files(
        self, app_id: int, build_id: uuid.UUID, files: list[MetaFileRow]
    ) -> None:
        """The version's files become those of `build_id` (its newest build that finished)."""
        await self.conn.execute("DELETE FROM meta_files WHERE app_id = $1", app_id)
        await self.conn.executemany(
            f"""INSERT INTO meta_files (app_id, {_FILE}, position)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
            [
                (
                    app_id,
                    f.file_name,
                    f.kind,
                    f.content_type,
                    f.size,
                    f.sha256,
                    f.location,
                    build_id,
                    i,
                )
                for i, f in enumerate(files)
            ],
        )

    async def meta_files(self, app_id: int) -> list[MetaFileRow]:
        rows = await self.conn.fetch(
            f"SELECT {_FILE} FROM meta_files WHERE app_id = $1 ORDER BY position", app_id
        )
        return [MetaFileRow(**r) for r in rows]

    async def meta_file(self, app_id: int, file_name: str) -> MetaFileRow | None:
        row = await self.conn.fetchrow(
            f"SELECT {_FILE} FROM meta_files WHERE app_id = $1 AND file_name = $2",
            app_id,
            file_name,
        )
        return MetaFileRow(**row) if row else None
