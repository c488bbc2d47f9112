"""SQL for an app version's ecr-meta files (the rows; the bytes live in the builder's bucket)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True)
class MetaFileRow:
    """One recorded file of a version, in the order the builder listed it."""

    file_name: str
    kind: str
    content_type: str
    size: int
    sha256: str
    location: str
    build_id: uuid.UUID


async def replace(
    conn: asyncpg.Connection, app_id: int, build_id: uuid.UUID, files: list[MetaFileRow]
) -> None:
    """The version's files become those of `build_id` (its newest build that finished)."""
    await conn.execute("DELETE FROM meta_files WHERE app_id = $1", app_id)
    await conn.executemany(
        """INSERT INTO meta_files (app_id, file_name, kind, content_type, size, sha256, location,
                                   build_id, position)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        [
            (app_id, f.file_name, f.kind, f.content_type, f.size, f.sha256, f.location, build_id, i)
            for i, f in enumerate(files)
        ],
    )


async def list_files(conn: asyncpg.Connection, app_id: int) -> list[MetaFileRow]:
    rows = await conn.fetch(
        """SELECT file_name, kind, content_type, size, sha256, location, build_id
           FROM meta_files WHERE app_id = $1 ORDER BY position""",
        app_id,
    )
    return [MetaFileRow(**dict(r)) for r in rows]


async def get_file(conn: asyncpg.Connection, app_id: int, file_name: str) -> MetaFileRow | None:
    row = await conn.fetchrow(
        """SELECT file_name, kind, content_type, size, sha256, location, build_id
           FROM meta_files WHERE app_id = $1 AND file_name = $2""",
        app_id,
        file_name,
    )
    return MetaFileRow(**dict(row)) if row else None
