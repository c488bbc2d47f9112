"""Stream one upload into one blob with bounded memory, hashing as it goes.

Small bodies (under one part) go to S3 in one request; larger ones as a multipart upload whose next
part is read from the client while up to `parallel` earlier ones are sent, so memory stays near
`parallel + 1` parts. Client checksums are compared before the upload completes: a mismatch, a
failure or a disconnect leaves nothing visible, and the caller aborts what was started.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping
from dataclasses import dataclass

from sage_common.errors import BadRequest, PayloadTooLarge

from .objectstore import ObjectStore


@dataclass(frozen=True)
class Checksums:
    """Digests the client says the body has (raw bytes), from Content-MD5 and checksum headers."""

    md5: bytes | None = None
    sha256: bytes | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Checksums:
        md5 = headers.get("Content-MD5")
        sha = headers.get("X-Checksum-SHA256") or headers.get("x-amz-checksum-sha256")
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


class _Parts:
    """The multipart side of one upload: fixed-size part buffers, recycled once sent."""

    def __init__(
        self,
        objects: ObjectStore,
        key: str,
        part_size: int,
        parallel: int,
        start: Callable[[], Awaitable[str]],
    ) -> None:
        self.objects, self.key, self.part_size, self.parallel = objects, key, part_size, parallel
        self.start = start
        self.upload_id: str | None = None
        self.done: list[tuple[int, str]] = []
        self.inflight: deque[asyncio.Task[tuple[int, str]]] = deque()
        self.spare: list[bytearray] = []
        self.buf = bytearray()  # grows while the body may still fit in one request
        self.filled = 0

    async def add(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            take = view[: self.part_size - self.filled]
            if self.filled == len(self.buf):
                self.buf += take
            else:
                self.buf[self.filled : self.filled + len(take)] = take
            self.filled += len(take)
            view = view[len(take) :]
            if self.filled == self.part_size:
                await self._send_full()

    async def _send_full(self) -> None:
        if self.upload_id is None:
            self.upload_id = await self.start()
        while len(self.inflight) >= self.parallel:
            self.done.append(await self.inflight.popleft())
        number = len(self.done) + len(self.inflight) + 1
        self.inflight.append(asyncio.ensure_future(self._send(number, self.buf, self.filled)))
        self.buf = self.spare.pop() if self.spare else bytearray(self.part_size)
        self.filled = 0

    async def _send(self, number: int, buf: bytearray, size: int) -> tuple[int, str]:
        assert self.upload_id is not None
        with memoryview(buf) as whole, whole[:size] as data:
            etag = await self.objects.upload_part(self.key, self.upload_id, number, data)
        self.spare.append(buf)
        return number, etag

    async def finish(self) -> list[tuple[int, str]]:
        """Send what is left; every part's (number, ETag), in order."""
        while self.inflight:
            self.done.append(await self.inflight.popleft())
        if self.filled:
            self.done.append(await self._send(len(self.done) + 1, self.buf, self.filled))
        return self.done

    async def settle(self) -> None:
        """Let the parts in flight land before anyone aborts the upload they belong to."""
        for task in self.inflight:
            with contextlib.suppress(BaseException):
                await asyncio.shield(task)


async def write_blob(
    objects: ObjectStore,
    key: str,
    chunks: AsyncIterable[bytes],
    *,
    part_size: int,
    parallel: int = 1,
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

    async def start() -> str:
        upload_id = await objects.create_multipart(
            key, content_type=content_type, metadata=metadata
        )
        await on_multipart(upload_id)
        return upload_id

    parts = _Parts(objects, key, part_size, parallel, start)
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > limit.bytes:
                raise PayloadTooLarge(limit.message)
            sha.update(chunk)
            if md5 is not None:
                md5.update(chunk)
            await parts.add(chunk)
        if md5 is not None and md5.digest() != expect.md5:  # md5 is made only when expected
            raise BadRequest("the body does not match its Content-MD5: nothing was stored")
        if expect.sha256 is not None and sha.digest() != expect.sha256:
            raise BadRequest("the body does not match its SHA-256 checksum: nothing was stored")
        written = Written(size, sha.hexdigest(), md5.hexdigest() if md5 is not None else None)
        if parts.upload_id is None:
            await objects.put(
                key,
                parts.buf,
                content_type=content_type,
                metadata=metadata,
                sha256=written.sha256,
            )
        else:
            await objects.complete_multipart(key, parts.upload_id, await parts.finish())
        return written
    finally:
        await parts.settle()
