"""SQL of the bookkeeping that keeps S3 and Postgres in step: uploads, garbage, bucket deletes."""

from __future__ import annotations

import uuid

import asyncpg

from .batch import Batcher


class UpkeepStore:
    pool: asyncpg.Pool
    _begun: Batcher[None, tuple[str, uuid.UUID], None]

    # ------------------------------------------------------------------ uploads in progress
    async def begin_upload(self, blob: str, bucket_id: uuid.UUID) -> None:
        """Record an upload before its first byte goes to S3 (uploads that begin together share
        one statement: see batch.py)."""
        await self._begun.submit(None, (blob, bucket_id))

    async def _begin_batch(self, _: None, items: list[tuple[str, uuid.UUID]]) -> list[None]:
        await self.pool.execute(
            "INSERT INTO uploads (blob, bucket_id) SELECT * FROM unnest($1::text[], $2::uuid[])",
            [blob for blob, _ in items],
            [bucket_id for _, bucket_id in items],
        )
        return [None] * len(items)

    async def set_upload_id(self, blob: str, upload_id: str) -> None:
        await self.pool.execute(
            "UPDATE uploads SET upload_id = $2 WHERE blob = $1", blob, upload_id
        )

    async def upload_failed(self, blob: str) -> None:
        """Hand an upload whose clean-up could not finish to the sweeper."""
        await self.pool.execute("UPDATE uploads SET state = 'aborting' WHERE blob = $1", blob)

    async def forget_upload(self, blob: str) -> None:
        await self.pool.execute("DELETE FROM uploads WHERE blob = $1", blob)

    async def upload(self, blob: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow("SELECT * FROM uploads WHERE blob = $1", blob)

    async def uploads_of(self, bucket_id: uuid.UUID) -> list[asyncpg.Record]:
        return await self.pool.fetch("SELECT * FROM uploads WHERE bucket_id = $1", bucket_id)

    async def abandoned_uploads(self, stale_seconds: float, limit: int) -> list[asyncpg.Record]:
        """Uploads that failed, or that have been open for longer than any upload should take."""
        return await self.pool.fetch(
            """SELECT * FROM uploads WHERE state = 'aborting'
                  OR started_at < now() - make_interval(secs => $1)
               ORDER BY started_at LIMIT $2""",
            stale_seconds,
            limit,
        )

    # ------------------------------------------------------------------ garbage blobs
    async def garbage(self, limit: int, older_than: float = 0.0) -> list[str]:
        """Garbage blobs retired more than `older_than` seconds ago, oldest first."""
        rows = await self.pool.fetch(
            """SELECT blob FROM garbage WHERE since <= now() - make_interval(secs => $2)
               ORDER BY since LIMIT $1""",
            limit,
            older_than,
        )
        return [r["blob"] for r in rows]

    async def forget_garbage(self, blobs: list[str]) -> None:
        await self.pool.execute("DELETE FROM garbage WHERE blob = ANY($1::text[])", blobs)

    # ------------------------------------------------------------------ bucket deletion
    async def mark_deleting(self, bucket_id: uuid.UUID) -> None:
        await self.pool.execute("UPDATE buckets SET deleting = true WHERE id = $1", bucket_id)

    async def deleting_owner(self, bucket_id: uuid.UUID) -> str | None:
        """The owner of the bucket when it is being deleted; None otherwise."""
        return await self.pool.fetchval(
            "SELECT owner FROM buckets WHERE id = $1 AND deleting", bucket_id
        )

    async def deleting_buckets(self) -> list[uuid.UUID]:
        rows = await self.pool.fetch("SELECT id FROM buckets WHERE deleting")
        return [r["id"] for r in rows]

    async def blobs_of(self, bucket_id: uuid.UUID, limit: int) -> list[tuple[str, str]]:
        rows = await self.pool.fetch(
            "SELECT key, blob FROM objects WHERE bucket_id = $1 ORDER BY key LIMIT $2",
            bucket_id,
            limit,
        )
        return [(r["key"], r["blob"]) for r in rows]

    async def drop_objects(self, bucket_id: uuid.UUID, keys: list[str]) -> None:
        await self.pool.execute(
            "DELETE FROM objects WHERE bucket_id = $1 AND key = ANY($2::text[])", bucket_id, keys
        )

    async def drop_bucket(self, bucket_id: uuid.UUID) -> None:
        """Remove the bucket row and (by cascade) its grants, once no object row is left."""
        await self.pool.execute("DELETE FROM buckets WHERE id = $1 AND deleting", bucket_id)
