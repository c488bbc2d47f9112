"""Bucket deletion, and the sweeper that finishes what failures and crashes left half done.

A bucket delete first marks the bucket `deleting` (from then on it is invisible), then deletes its
blobs and object rows in batches, then the bucket row with its grants. Interrupted anywhere, it is
resumed by the next DELETE or by the sweeper. The sweeper also deletes garbage blobs and aborts
uploads whose request died without cleaning up.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from prometheus_client import Counter

from sage_common.auth import Principal

from .service import Storage, bucket_for, bucket_uuid

log = logging.getLogger(__name__)

BATCH = 1000
SWEPT = Counter(
    "sage_storage_swept_total",
    "What the sweeper cleared: blobs of uploads that never committed, garbage blobs, buckets",
    ["kind"],
)


async def delete_bucket(ctx: Storage, who: Principal | None, raw_id: str) -> uuid.UUID:
    """Delete a bucket and everything in it; resumes a delete that was interrupted."""
    bucket_id = bucket_uuid(raw_id)
    # A bucket being deleted is invisible; its owner (or an admin) may still resume the delete.
    owner = await ctx.store.deleting_owner(bucket_id)
    if owner is None or who is None or not (who.is_admin or who.username == owner):
        bucket_id = (await bucket_for(ctx, who, raw_id, "FULL_CONTROL")).id
        await ctx.store.mark_deleting(bucket_id)
    await finish_delete(ctx, bucket_id)
    return bucket_id


async def finish_delete(ctx: Storage, bucket_id: uuid.UUID) -> None:
    while batch := await ctx.store.blobs_of(bucket_id, BATCH):
        await ctx.objects.delete([blob for _, blob in batch])
        await ctx.store.drop_objects(bucket_id, [key for key, _ in batch])
    await ctx.store.drop_bucket(bucket_id)


async def sweep(ctx: Storage) -> None:
    """One pass: resume bucket deletes, delete garbage, abort abandoned uploads."""
    for bucket_id in await ctx.store.deleting_buckets():
        await finish_delete(ctx, bucket_id)
        SWEPT.labels("bucket").inc()
    while garbage := await ctx.store.garbage(BATCH, ctx.config.garbage_grace_seconds):
        await ctx.objects.delete(garbage)
        await ctx.store.forget_garbage(garbage)
        SWEPT.labels("garbage").inc(len(garbage))
    for row in await ctx.store.abandoned_uploads(ctx.config.stale_upload_seconds, BATCH):
        if row["upload_id"]:
            await ctx.objects.abort_multipart(row["blob"], row["upload_id"])
        await ctx.objects.delete([row["blob"]])
        await ctx.store.forget_upload(row["blob"])
        SWEPT.labels("upload").inc()
        log.info("swept an upload that never committed", extra={"blob": row["blob"]})


async def sweep_once(ctx: Storage) -> bool:
    """Sweep unless another replica is sweeping now; whether this one did."""
    async with ctx.store.pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext('storage-sweeper'))"):
            return False
        try:
            await sweep(ctx)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext('storage-sweeper'))")
    return True


async def sweep_forever(ctx: Storage) -> None:
    """Sweep at start-up and then every `sweep_interval_seconds`."""
    while True:
        try:
            await sweep_once(ctx)
        except Exception as exc:  # noqa: BLE001 - the next pass retries
            log.warning("sweep failed: %s", type(exc).__name__)
        await asyncio.sleep(ctx.config.sweep_interval_seconds)
