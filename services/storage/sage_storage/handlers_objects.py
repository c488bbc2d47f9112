"""HTTP in and out for objects: streamed uploads (multipart form or raw body), downloads, listings.

Bodies stream from the socket to S3, never read whole. When an upload fails before its body is
read, the rest is read and dropped (for a bounded time) so the client gets the error answer rather
than a reset connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from urllib.parse import quote

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.hdrs import CONTENT_TYPE
from aiohttp.http_exceptions import HttpProcessingError

from sage_common.auth import principal
from sage_common.errors import BadRequest, ProblemError
from sage_common.openapi import describe
from sage_common.web import json_response

from . import keys, service, service_listing, service_objects
from .handlers import flag, int_query
from .models import Bucket, StoredObject
from .ranges import parse_range, unsatisfiable
from .service_objects import Incoming
from .state import STORAGE
from .uploads import Checksums

log = logging.getLogger(__name__)

PART_READ = 1024 * 1024
_FORM_TYPES = ("application/x-www-form-urlencoded", "")
MALFORMED_FORM = "the multipart form is malformed (its boundary or a part's headers)"
RAW_NEEDS_KEY = "a raw upload names its key; a key ending in '/' needs a multipart form"


def _is_listing(path: str) -> bool:
    return path == "" or path.endswith("/")


async def _part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(PART_READ):
        yield chunk


async def _drain(request: web.Request, seconds: float) -> None:
    """Read and drop what is left of the body, for at most `seconds`."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(seconds):
            while await request.content.readany():
                pass


@describe(tags=["objects"])
async def upload(request: web.Request) -> web.Response:
    """Upload: multipart form (every part named `file`) or a raw body; answers bucket id and key."""
    ctx = request.app[STORAGE]
    raw_id, path = request.match_info["bucket"], request.match_info["key"]
    try:
        if request.content_type == "multipart/form-data":
            bucket = await service.bucket_for(ctx, principal(request), raw_id, "WRITE")
            stored = await _upload_form(request, ctx, bucket, path)
        else:
            bucket, blob = await service.bucket_to_write(ctx, principal(request), raw_id)
            stored = [await _upload_raw(request, ctx, bucket, path, blob)]
    except ProblemError:
        if not request.content.at_eof():
            await _drain(request, ctx.config.drain_seconds)
        raise
    answer: dict[str, object] = {"bucket-id": str(bucket.id), "key": keys.shown(stored[0])}
    if len(stored) > 1:
        answer["keys"] = [keys.shown(k) for k in stored]
    return json_response(answer)


async def _upload_raw(
    request: web.Request, ctx: service.Storage, bucket: Bucket, path: str, blob: str
) -> str:
    try:
        if _is_listing(path):
            raise BadRequest(RAW_NEEDS_KEY)
        ctype = request.headers.get(CONTENT_TYPE)
        incoming = Incoming(
            chunks=request.content.iter_any(),
            content_type=None if request.content_type in _FORM_TYPES else ctype,
            length=request.content_length,
            expect=Checksums.from_headers(request.headers),
        )
    except BaseException:
        await service.forget_begun(ctx, blob)
        raise
    return await service_objects.upload(ctx, bucket, path, incoming, begun=blob)


async def _upload_form(
    request: web.Request, ctx: service.Storage, bucket: Bucket, path: str
) -> list[str]:
    try:
        reader = await request.multipart()
    except ValueError:  # aiohttp's: no boundary
        raise BadRequest(MALFORMED_FORM) from None
    stored: list[str] = []
    while (part := await _next_part(reader)) is not None:
        if not isinstance(part, BodyPartReader) or part.name != "file":
            await part.release()
            continue
        if stored and not _is_listing(path):
            raise BadRequest(
                f"several files need a key ending in '/'; stored only {keys.shown(stored[0])}"
            )
        incoming = Incoming(
            chunks=_part_chunks(part),
            filename=part.filename,
            content_type=part.headers.get(CONTENT_TYPE),
            expect=Checksums.from_headers(part.headers),
        )
        stored.append(await service_objects.upload(ctx, bucket, path, incoming))
    if not stored:
        raise BadRequest("the form has no part named 'file'")
    return stored


async def _next_part(reader: MultipartReader) -> MultipartReader | BodyPartReader | None:
    try:
        return await reader.next()
    except (ValueError, RuntimeError, HttpProcessingError):  # a boundary or part that won't parse
        raise BadRequest(MALFORMED_FORM) from None


def _headers(obj: StoredObject) -> dict[str, str]:
    name = obj.key.rsplit("/", 1)[-1]
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("\\", "_")
    return {
        "Content-Type": obj.content_type,
        "ETag": f'"{obj.sha256}"',
        "Last-Modified": obj.last_modified.strftime("%a, %d %b %Y %H:%M:%S GMT"),
        "Accept-Ranges": "bytes",
        "X-Checksum-SHA256": obj.sha256,
        "Content-Disposition": (
            f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"
        ),
    }


@describe(tags=["objects"])
async def get(request: web.Request) -> web.StreamResponse:
    """A listing (path ending in `/`) or a download (streamed; `Range` honoured)."""
    ctx, who = request.app[STORAGE], principal(request)
    path = request.match_info["key"]
    bucket = await service.bucket_for(ctx, who, request.match_info["bucket"], "READ")
    if _is_listing(path):
        token = request.query.get("ContinuationToken") or request.query.get("continuationToken")
        return json_response(
            await service_listing.list_objects(
                ctx,
                bucket,
                path,
                recursive=flag(request, "recursive"),
                limit=int_query(request, "limit"),
                token=token,
            )
        )
    obj = await service_objects.stat(ctx, bucket, path)
    headers = _headers(obj)
    wanted = parse_range(request.headers.get("Range"), obj.size)
    if wanted is unsatisfiable:
        headers["Content-Range"] = f"bytes */{obj.size}"
        return web.Response(status=416, headers=headers)
    status, offset, length = 200, 0, obj.size
    if wanted is not None:
        status, (offset, length) = 206, wanted  # type: ignore[misc]
        headers["Content-Range"] = f"bytes {offset}-{offset + length - 1}/{obj.size}"
    if request.method == "HEAD":
        headers["Content-Length"] = str(length)
        return web.Response(status=status, headers=headers)
    chunks = await service_objects.open_blob(ctx, obj, offset, length if wanted else None)
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = length
    try:
        await response.prepare(request)
        async for chunk in chunks:
            await response.write(chunk)
        await response.write_eof()
    except ProblemError as exc:
        # Too late for an error answer: cut the connection so the client sees a short body.
        log.warning("download broke off: %s", exc.detail)
        if request.transport is not None:
            request.transport.close()
    finally:
        await chunks.aclose()
    return response


@describe(tags=["objects"])
async def delete(request: web.Request) -> web.Response:
    """Delete one object. An empty key is refused: deleting a bucket is DELETE on the bucket."""
    path = request.match_info["key"]
    if path == "":
        raise BadRequest("no key given; to delete the bucket, DELETE /api/v1/objects/{id}")
    ctx = request.app[STORAGE]
    raw_id = request.match_info["bucket"]
    bucket = await service.bucket_for(ctx, principal(request), raw_id, "WRITE")
    key = await service_objects.delete(ctx, bucket, path)
    return json_response({"deleted": [keys.shown(key)]})
