"""SQL of the storage service: buckets, grants, the object index and its S3 bookkeeping."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from sage_common.errors import Forbidden, NotFound, PayloadTooLarge

from .batch import Batcher
from .models import Bucket, CreateBucket, StoredObject
from .store_upkeep import UpkeepStore

# Most uploads committed (or begun) in one statement; more wait for the next.
BATCH_ITEMS = 100
_BUCKET_COLS = "b.id, b.name, b.owner, b.type, b.metadata, b.time_created, b.time_last_updated"
# The caller's grants on b: as a user ($2, NULL when anonymous) and through groups ($3).
_MY_GRANTS = """(g.grantee_type = 'USER' AND g.grantee = $2)
                OR (g.grantee_type = 'GROUP' AND g.grantee = ANY($3::text[]))"""

# A bucket with the caller's grants on it ($1 the bucket, $2 and $3 the caller).
_LOOKUP = f"""SELECT {_BUCKET_COLS},
                 array_agg(g.permission) FILTER (WHERE g.permission IS NOT NULL) AS granted
             FROM buckets b LEFT JOIN grants g ON g.bucket_id = b.id AND ({_MY_GRANTS})
             WHERE b.id = $1 AND NOT b.deleting GROUP BY b.id"""
# The same, recording the uploads $4 into the bucket.
_LOOKUP_BEGIN = f"""WITH begun AS (
                        INSERT INTO uploads (blob, bucket_id) SELECT unnest($4::text[]), $1
                    )
                    {_LOOKUP}"""


def _bucket(row: asyncpg.Record) -> Bucket:
    data = dict(row)
    data["granted"] = list(data.pop("granted", None) or [])
    return Bucket(**data)


class Store(UpkeepStore):
    """Every query of the service; `UpkeepStore` holds the S3 bookkeeping half."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._commits: Batcher[tuple[uuid.UUID, int], StoredObject, asyncpg.Record] = Batcher(
            self._commit_batch, BATCH_ITEMS
        )
        self._begun: Batcher[None, tuple[str, uuid.UUID], None] = Batcher(
            self._begin_batch, BATCH_ITEMS
        )
        self._lookups: Batcher[
            tuple[uuid.UUID, str | None, tuple[str, ...]], str | None, asyncpg.Record | None
        ] = Batcher(self._lookup_batch, 10_000)

    # ------------------------------------------------------------------ buckets and grants
    async def create_bucket(self, owner: str, body: CreateBucket, max_buckets: int) -> Bucket:
        """Insert a bucket with the owner's FULL_CONTROL (and public READ); 403 over quota."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('storage-owner:' || $1))", owner
            )
            if max_buckets > 0:
                count = await conn.fetchval(
                    "SELECT count(*) FROM buckets WHERE owner = $1 AND NOT deleting", owner
                )
                if count >= max_buckets:
                    raise Forbidden(f"bucket quota reached: {owner} owns {count} of {max_buckets}")
            row = await conn.fetchrow(
                f"""INSERT INTO buckets AS b (id, name, owner, type, metadata)
                    VALUES ($1, $2, $3, $4, $5) RETURNING {_BUCKET_COLS}""",
                uuid.uuid4(),
                body.name,
                owner,
                body.type,
                body.metadata,
            )
            grants = [(row["id"], "USER", owner, "FULL_CONTROL")]
            if body.public:
                grants.append((row["id"], "GROUP", "AllUsers", "READ"))
            await conn.executemany("INSERT INTO grants VALUES ($1, $2, $3, $4)", grants)
        return _bucket(row)

    async def bucket(
        self,
        bucket_id: uuid.UUID,
        username: str | None,
        groups: list[str],
        begin: str | None = None,
    ) -> Bucket | None:
        """The bucket with the caller's grants on it; None when absent or being deleted. `begin`:
        a blob recorded as an upload into it (as `begin_upload` does) by the same statement,
        whatever the answer. Every upload and download asks this first, so lookups of one bucket
        by one caller share the next query (batch.py), which still sees a grant changed before."""
        row = await self._lookups.submit((bucket_id, username, tuple(groups)), begin)
        return _bucket(row) if row else None

    async def _lookup_batch(
        self, key: tuple[uuid.UUID, str | None, tuple[str, ...]], begins: list[str | None]
    ) -> list[asyncpg.Record | None]:
        bucket_id, username, groups = key
        blobs = [blob for blob in begins if blob is not None]
        if blobs:
            row = await self.pool.fetchrow(_LOOKUP_BEGIN, bucket_id, username, list(groups), blobs)
        else:
            row = await self.pool.fetchrow(_LOOKUP, bucket_id, username, list(groups))
        return [row] * len(begins)

    async def list_buckets(
        self,
        username: str | None,
        groups: list[str],
        *,
        admin: bool,
        owner: str | None,
        name: str | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[Bucket]:
        """Buckets the caller may read, oldest first, one page after the `after` position."""
        rows = await self.pool.fetch(
            f"""SELECT {_BUCKET_COLS} FROM buckets b
                WHERE NOT b.deleting
                  AND ($4 OR b.owner = $2 OR EXISTS (
                        SELECT 1 FROM grants g WHERE g.bucket_id = b.id
                          AND g.permission IN ('READ', 'WRITE', 'FULL_CONTROL') AND ({_MY_GRANTS})))
                  AND ($5::text IS NULL OR b.owner = $5)
                  AND ($6::text IS NULL OR b.name = $6)
                  AND ($7::timestamptz IS NULL OR (b.time_created, b.id) > ($7, $8::uuid))
                ORDER BY b.time_created, b.id LIMIT $1""",
            limit,
            username,
            groups,
            admin,
            owner,
            name,
            *(after or (None, None)),
        )
        return [_bucket(r) for r in rows]

    async def update_bucket(self, bucket_id: uuid.UUID, fields: dict[str, Any]) -> None:
        sets = ", ".join(f"{col} = ${i}" for i, col in enumerate(fields, start=2))
        await self.pool.execute(
            f"UPDATE buckets SET {sets}, time_last_updated = now() WHERE id = $1 AND NOT deleting",
            bucket_id,
            *fields.values(),
        )

    async def grants(self, bucket_id: uuid.UUID) -> list[dict[str, str]]:
        rows = await self.pool.fetch(
            """SELECT grantee_type AS "granteeType", grantee, permission FROM grants
               WHERE bucket_id = $1 ORDER BY grantee_type DESC, grantee, permission""",
            bucket_id,
        )
        return [dict(r) for r in rows]

    async def add_grant(self, bucket_id: uuid.UUID, type_: str, grantee: str, perm: str) -> None:
        await self.pool.execute(
            """WITH added AS (INSERT INTO grants VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING)
               UPDATE buckets SET time_last_updated = now() WHERE id = $1""",
            bucket_id,
            type_,
            grantee,
            perm,
        )

    async def delete_grants(
        self, bucket_id: uuid.UUID, type_: str, grantee: str, perm: str | None
    ) -> int:
        return await self.pool.fetchval(
            """WITH gone AS (
                   DELETE FROM grants WHERE bucket_id = $1 AND grantee_type = $2 AND grantee = $3
                     AND ($4::text IS NULL OR permission = $4) RETURNING 1
               ), touched AS (
                   UPDATE buckets SET time_last_updated = now()
                   WHERE id = $1 AND EXISTS (SELECT FROM gone)
               )
               SELECT count(*) FROM gone""",
            bucket_id,
            type_,
            grantee,
            perm,
        )

    # ------------------------------------------------------------------ objects
    async def object(self, bucket_id: uuid.UUID, key: str) -> StoredObject | None:
        row = await self.pool.fetchrow(
            "SELECT * FROM objects WHERE bucket_id = $1 AND key = $2", bucket_id, key
        )
        return StoredObject(**row) if row else None

    async def list_objects(
        self, bucket_id: uuid.UUID, start: str, end: str | None, limit: int
    ) -> list[StoredObject]:
        """Objects with `start` <= key < `end` (no end: to the last key), in key order."""
        rows = await self.pool.fetch(
            """SELECT * FROM objects WHERE bucket_id = $1 AND key >= $2
               AND ($3::text IS NULL OR key < $3) ORDER BY key LIMIT $4""",
            bucket_id,
            start,
            end,
            limit,
        )
        return [StoredObject(**r) for r in rows]

    async def list_folded(
        self, bucket_id: uuid.UUID, start: str, end: str | None, prefix_length: int, limit: int
    ) -> list[StoredObject]:
        """Like `list_objects`, but after a key with a `/` past its first `prefix_length`
        characters, the next row is the first key past that whole folder: one row per folder or
        object, each found by one index probe (a skip scan), however many keys a folder holds."""
        rows = await self.pool.fetch(
            """WITH RECURSIVE walk (key, n) AS (
                   (SELECT o.key, 1 FROM objects o WHERE o.bucket_id = $1 AND o.key >= $2
                      AND ($3::text IS NULL OR o.key < $3) ORDER BY o.key LIMIT 1)
                   UNION ALL
                   SELECT next.key, w.n + 1 FROM walk w, LATERAL (
                       SELECT o.key FROM objects o WHERE o.bucket_id = $1
                         AND ($3::text IS NULL OR o.key < $3)
                         AND o.key >= CASE
                             WHEN strpos(substr(w.key, $4 + 1), '/') > 0
                             THEN left(w.key, $4 + strpos(substr(w.key, $4 + 1), '/') - 1) || '0'
                             ELSE w.key || chr(1) END
                       ORDER BY o.key LIMIT 1) AS next
                   WHERE w.n < $5
               )
               SELECT o.* FROM walk w JOIN objects o ON o.bucket_id = $1 AND o.key = w.key
               ORDER BY o.key""",
            bucket_id,
            start,
            end,
            prefix_length,
            limit,
        )
        return [StoredObject(**r) for r in rows]

    async def usage(self, owner: str) -> int:
        return int(
            await self.pool.fetchval(
                "SELECT coalesce(sum(bytes_used), 0) FROM buckets WHERE owner = $1", owner
            )
        )

    async def commit_object(self, obj: StoredObject, quota_bytes: int) -> str | None:
        """Make an uploaded blob the object at its key; answers the replaced blob (now in
        `garbage`), if any. 404 if the bucket went away meanwhile, 413 over the owner's byte quota
        (migration 0002). Commits into one bucket are batched (migration 0003)."""
        row = await self._commits.submit((obj.bucket_id, quota_bytes), obj)
        if row["outcome"] == "gone":
            raise NotFound("the bucket was deleted during the upload")
        if row["outcome"] == "quota":
            raise PayloadTooLarge(
                f"storage quota exceeded: {row['owner']} uses {row['used']} of {quota_bytes} bytes"
            )
        return row["old_blob"]

    async def _commit_batch(
        self, key: tuple[uuid.UUID, int], objs: list[StoredObject]
    ) -> list[asyncpg.Record]:
        bucket_id, quota_bytes = key
        rows = await self.pool.fetch(
            "SELECT * FROM commit_objects($1, $2, $3, $4, $5, $6, $7, $8)",
            bucket_id,
            [o.key for o in objs],
            [o.blob for o in objs],
            [o.size for o in objs],
            [o.sha256 for o in objs],
            [o.md5 for o in objs],
            [o.content_type for o in objs],
            quota_bytes,
        )
        return list(rows)

    async def delete_object(self, bucket_id: uuid.UUID, key: str) -> str | None:
        """Remove the object row (its blob to `garbage`); the blob, or None if there was none."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM buckets WHERE id = $1 FOR UPDATE", bucket_id)
            row = await conn.fetchrow(
                "DELETE FROM objects WHERE bucket_id = $1 AND key = $2 RETURNING blob, size",
                bucket_id,
                key,
            )
            if row is None:
                return None
            await conn.execute("INSERT INTO garbage (blob) VALUES ($1)", row["blob"])
            await conn.execute(
                """UPDATE buckets SET bytes_used = bytes_used - $2,
                       object_count = object_count - 1 WHERE id = $1""",
                bucket_id,
                row["size"],
            )
        return str(row["blob"])
