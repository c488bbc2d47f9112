"""Stream one upload into one blob with bounded memory, hashing as it goes.

Small bodies (under one part) go to S3 in one request; larger ones as a multipart upload whose next
part is read from the client while the previous one is sent to S3, so memory stays near two parts
whatever the size. Checksums sent by the client are compared before the upload is completed: a
mismatch, a failure or a disconnect leaves nothing visible, and the caller aborts what was started.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass

from sage_common.errors import BadRequest, PayloadTooLarge

from .objectstore import ObjectStore


@dataclass(frozen=True)
class Checksums:
    """Digests the client says the body has (raw bytes), from Content-MD5 and checksum headers."""

    md5: bytes | None = None
    sha256: bytes | None = None

    @classmethod
    def from_headers(cls, headers: object) -> Checksums:
        get = headers.get  # type: ignore[attr-defined]
        md5 = get("Content-MD5")
        sha = get("X-Checksum-SHA256") or get("x-amz-checksum-sha256")
        return cls(
            md5=_digest(md5, 16, "Content-MD5") if md5 else None,
            sha256=_digest(sha, 32, "SHA-256 checksum") if sha else None,
        )


def _digest(value: str, size: int, what: str) -> bytes:
    """A digest given as base64 (as S3 takes it) or as hex."""
    value = value.strip()
    try:
        if len(value) == size * 2:
            return bytes.fromhex(value)
        raw = base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        raw = b""
    if len(raw) != size:
        raise BadRequest(f"the {what} header is not a base64 or hex digest of {size} bytes")
    return raw


@dataclass(frozen=True)
class Written:
    size: int
    sha256: str
    md5: str | None


@dataclass(frozen=True)
class Limit:
    bytes: int
    message: str


async def write_blob(
    objects: ObjectStore,
    key: str,
    chunks: AsyncIterable[bytes],
    *,
    part_size: int,
    limit: Limit,
    content_type: str,
    metadata: dict[str, str],
    expect: Checksums,
    on_multipart: Callable[[str], Awaitable[None]],
) -> Written:
    """Upload the stream to `key`; raises without completing anything on any failure.

    `on_multipart` learns the upload id before the first part is sent, so that whoever cleans up
    after a failure (or a crash) can abort it.
    """
    sha = hashlib.sha256()
    md5 = hashlib.md5(usedforsecurity=False) if expect.md5 is not None else None
    size = 0
    buf = bytearray()
    upload_id: str | None = None
    parts: list[tuple[int, str]] = []
    inflight: asyncio.Task[tuple[int, str]] | None = None

    async def send(number: int, data: bytearray) -> tuple[int, str]:
        assert upload_id is not None
        return number, await objects.upload_part(key, upload_id, number, data)

    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > limit.bytes:
                raise PayloadTooLarge(limit.message)
            sha.update(chunk)
            if md5 is not None:
                md5.update(chunk)
            buf += chunk
            if len(buf) < part_size:
                continue
            if upload_id is None:
                upload_id = await objects.create_multipart(
                    key, content_type=content_type, metadata=metadata
                )
                await on_multipart(upload_id)
            if inflight is not None:
                parts.append(await inflight)
            inflight = asyncio.ensure_future(send(len(parts) + 1, buf))
            buf = bytearray()
        if inflight is not None:
            parts.append(await inflight)
            inflight = None
        written = Written(size, sha.hexdigest(), md5.hexdigest() if md5 is not None else None)
        _verify(expect, sha.digest(), md5.digest() if md5 is not None else None)
        if upload_id is None:
            await objects.put(key, buf, content_type=content_type, metadata=metadata)
            return written
        if buf or not parts:
            parts.append(await send(len(parts) + 1, buf))
        await objects.complete_multipart(key, upload_id, parts)
        return written
    finally:
        if inflight is not None and not inflight.done():
            # Let the part in flight land before anyone aborts the upload it belongs to.
            with contextlib.suppress(BaseException):
                await asyncio.shield(inflight)
        if inflight is not None and inflight.done() and not inflight.cancelled():
            inflight.exception()  # retrieved: its failure is reported through the stream's


def _verify(expect: Checksums, sha256: bytes, md5: bytes | None) -> None:
    if expect.md5 is not None and expect.md5 != md5:
        raise BadRequest("the body does not match its Content-MD5: nothing was stored")
    if expect.sha256 is not None and expect.sha256 != sha256:
        raise BadRequest("the body does not match its SHA-256 checksum: nothing was stored")
