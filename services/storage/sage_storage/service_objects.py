"""Use cases on objects: upload, open for download, delete. Listings are in service_listing.py."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from sage_common.errors import BadRequest, NotFound, PayloadTooLarge

from . import keys
from .models import Bucket, StoredObject
from .objectstore import BlobMissing
from .service import Storage, forget_begun, new_blob
from .uploads import Checksums, Limit, write_blob

log = logging.getLogger(__name__)

DEFAULT_TYPE = "application/octet-stream"
_CONTENT_TYPE_RE = re.compile(r"^[!-~][ -~]{0,254}$")


@dataclass
class Incoming:
    """One file arriving: a raw body, or one `file` part of a multipart form."""

    chunks: AsyncIterable[bytes]
    filename: str | None = None
    content_type: str | None = None
    length: int | None = None
    expect: Checksums = Checksums()


async def _limit(ctx: Storage, bucket: Bucket, key: str) -> Limit:
    """The most an upload to `key` may send: the service's maximum, or the owner's quota left."""
    most, quota = ctx.config.max_upload_bytes, ctx.config.quota_bytes
    if quota > 0:  # what replacing an object frees counts as free
        current = await ctx.store.object(bucket.id, key)
        used = await ctx.store.usage(bucket.owner) - (current.size if current else 0)
        if quota - used < most:
            message = f"storage quota exceeded: {bucket.owner} uses {used} of {quota} bytes"
            return Limit(max(0, quota - used), message)
    return Limit(most, f"the upload is larger than this service accepts ({most} bytes)")


async def upload(
    ctx: Storage, bucket: Bucket, path: str, incoming: Incoming, begun: str | None = None
) -> str:
    """Store one file under `path` in a bucket the caller may write; answer its key. `begun`: a
    blob already recorded as an upload into the bucket (service.bucket_to_write) to use."""
    try:
        key = keys.upload_key(path, incoming.filename)
        limit = await _limit(ctx, bucket, key)
        if incoming.length is not None and incoming.length > limit.bytes:
            raise PayloadTooLarge(limit.message)
        content_type = incoming.content_type or DEFAULT_TYPE
        if not _CONTENT_TYPE_RE.match(content_type):
            raise BadRequest("the Content-Type is not printable ASCII of at most 255 characters")
    except BaseException:
        if begun is not None:
            await forget_begun(ctx, begun)
        raise
    blob = begun or new_blob(bucket.id)
    if begun is None:
        await ctx.store.begin_upload(blob, bucket.id)
    try:
        written = await write_blob(
            ctx.objects,
            blob,
            incoming.chunks,
            part_size=ctx.config.part_size,
            parallel=ctx.config.parts_in_flight,
            limit=limit,
            content_type=content_type,
            metadata={"sage-bucket": str(bucket.id), "sage-key": quote(key, safe="/")},
            expect=incoming.expect,
            on_multipart=lambda upload_id: ctx.store.set_upload_id(blob, upload_id),
        )
        old = await ctx.store.commit_object(
            StoredObject(
                bucket.id,
                key,
                blob,
                written.size,
                written.sha256,
                written.md5,
                content_type,
                datetime.now(UTC),
            ),
            ctx.config.quota_bytes,
        )
    except BaseException:
        await asyncio.shield(discard_upload(ctx, blob))
        raise
    if old is not None:
        await drop_blobs(ctx, [old])
    return key


async def discard_upload(ctx: Storage, blob: str) -> None:
    """Undo an upload that did not commit: abort its S3 upload, delete its blob, forget it.

    Whatever cannot be undone now (S3 or Postgres down) stays recorded for the sweeper.
    """
    try:
        row = await ctx.store.upload(blob)
        if row is not None and row["upload_id"]:
            await ctx.objects.abort_multipart(blob, row["upload_id"])
        await ctx.objects.delete([blob])
        await ctx.store.forget_upload(blob)
    except Exception as exc:  # noqa: BLE001 - the sweeper retries; the caller's error stands
        log.warning("upload clean-up deferred to the sweeper: %s", type(exc).__name__)
        try:
            await ctx.store.upload_failed(blob)
        except Exception:  # noqa: BLE001 - the stale-upload sweep still finds it
            log.warning("could not mark the upload for clean-up")


async def drop_blobs(ctx: Storage, blobs: list[str]) -> None:
    """Delete blobs already listed in `garbage`, unless a grace period leaves that to the sweeper
    (so that a download begun before a replace or delete can finish); on failure they wait too."""
    if ctx.config.garbage_grace_seconds > 0:
        return
    try:
        await ctx.objects.delete(blobs)
        await ctx.store.forget_garbage(blobs)
    except Exception as exc:  # noqa: BLE001 - garbage is retried by the sweeper
        log.warning("blob deletion deferred to the sweeper: %s", type(exc).__name__)


async def stat(ctx: Storage, bucket: Bucket, path: str) -> StoredObject:
    obj = await ctx.store.object(bucket.id, keys.object_key(path))
    if obj is None:
        raise NotFound("no such object")
    return obj


async def open_blob(
    ctx: Storage, obj: StoredObject, offset: int = 0, length: int | None = None
) -> AsyncGenerator[bytes, None]:
    try:
        return await ctx.objects.open(obj.blob, offset, length)
    except BlobMissing:
        log.error("object row without its blob: %s", obj.blob)
        raise NotFound("no such object") from None


async def delete(ctx: Storage, bucket: Bucket, path: str) -> str:
    key = keys.object_key(path)
    blob = await ctx.store.delete_object(bucket.id, key)
    if blob is None:
        raise NotFound("no such object")
    await drop_blobs(ctx, [blob])
    return key
