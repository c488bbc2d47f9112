"""A build's log: scrubbed of secrets, kept in S3 while the build runs, its tail kept for the event.

The object is rewritten whole every `flush_seconds` while lines arrive (logs are small), so a
reader follows a live build with ranged GETs from the length it already has; the last upload
carries the metadata `complete: true`. If S3 is down as the build ends, the result does not wait
for it: that last upload is retried in the background, backing off, until S3 answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import re
import time
from collections import deque
from collections.abc import Iterable
from typing import Protocol

from minio import Minio
from minio.helpers import DictType

from sage_common.redact import redact_urls

log = logging.getLogger(__name__)
# Final uploads retried after an S3 outage (held here so that they are not garbage collected).
_FINISHING: set[asyncio.Task[None]] = set()

# What a log line may hold besides credentials in URLs (those go by `sage_common.redact`'s rule:
# git prints remote and submodule URLs as they were written).
_PATTERNS = [
    # Authorization headers and bearer/basic/sage tokens
    (re.compile(r"(?i)\b(authorization:\s*)\S+(\s+\S+)?"), r"\1***"),
    (re.compile(r"(?i)\b(bearer|basic|sage)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 ***"),
    # JWTs anywhere
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), "***"),
    # password=..., token=..., secret=... in query strings and key-value output
    (
        re.compile(
            r"(?i)\b((?:password|passwd|token|secret|access_token)[\"']?\s*[=:]\s*[\"']?)[^\s&\"',]+"
        ),
        r"\1***",
    ),
]


class Scrubber:
    """Removes known secrets and anything shaped like a credential from log lines."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, line: str) -> str:
        for secret in self._secrets:
            line = line.replace(secret, "***")
        line = redact_urls(line)
        for pattern, repl in _PATTERNS:
            line = pattern.sub(repl, line)
        return line


class FileSink(Protocol):
    """Where a build's files are kept: its log, and its ecr-meta folder (`metafiles`)."""

    def location(self, key: str) -> str: ...

    async def put_file(self, key: str, data: bytes, content_type: str) -> None: ...


class LogSink(FileSink, Protocol):
    """Where a build log is kept; `put` replaces the whole object."""

    async def put(self, key: str, data: bytes, *, complete: bool) -> None: ...


class MemoryLogSink:
    """A log sink in memory, for tests of code that writes logs."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.complete: dict[str, bool] = {}
        self.content_types: dict[str, str] = {}

    def location(self, key: str) -> str:
        return f"memory://{key}"

    async def put(self, key: str, data: bytes, *, complete: bool) -> None:
        self.objects[key] = data
        self.complete[key] = complete

    async def put_file(self, key: str, data: bytes, content_type: str) -> None:
        self.objects[key] = data
        self.content_types[key] = content_type


class S3LogSink:
    """Build logs in the builder's S3 bucket, written through the minio client in a thread."""

    def __init__(self, client: Minio, bucket: str) -> None:
        self.client, self.bucket = client, bucket
        self._bucket_checked = False

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    async def ensure_bucket(self) -> None:
        """Make the log bucket when it does not exist yet."""
        if not await asyncio.to_thread(self.client.bucket_exists, self.bucket):
            await asyncio.to_thread(self.client.make_bucket, self.bucket)
        self._bucket_checked = True

    async def put(self, key: str, data: bytes, *, complete: bool) -> None:
        metadata: DictType = {"complete": "true" if complete else "false"}
        await self.put_file(key, data, "text/plain; charset=utf-8", metadata=metadata)

    async def put_file(
        self, key: str, data: bytes, content_type: str, metadata: DictType | None = None
    ) -> None:
        if not self._bucket_checked:
            await self.ensure_bucket()
        await asyncio.to_thread(
            self.client.put_object,
            self.bucket,
            key,
            io.BytesIO(data),
            len(data),
            content_type=content_type,
            metadata=metadata,
        )


class BuildLog:
    """The log of one build: lines in, scrubbed, uploaded now and then, tail kept for the event."""

    def __init__(
        self,
        sink: LogSink,
        key: str,
        scrubber: Scrubber,
        *,
        flush_seconds: float = 1.0,
        max_bytes: int = 16 * 1024**2,
        tail_lines: int = 40,
        retry_seconds: float = 1.0,
        retry_for_seconds: float = 3600.0,
    ) -> None:
        self.sink, self.key, self.scrub = sink, key, scrubber
        self.flush_seconds, self.max_bytes = flush_seconds, max_bytes
        self.retry_seconds, self.retry_for_seconds = retry_seconds, retry_for_seconds
        self.finishing: asyncio.Task[None] | None = None  # the last upload, retried
        self._put: asyncio.Future[None] | None = None  # the upload under way
        self._buffer = bytearray()
        self._tail: deque[str] = deque(maxlen=tail_lines)
        self._dirty = asyncio.Event()
        self._truncated = False
        self._task: asyncio.Task[None] | None = None
        self.uploaded = False

    @property
    def location(self) -> str:
        return self.sink.location(self.key)

    def tail(self) -> list[str]:
        return list(self._tail)

    def __call__(self, line: str) -> None:
        """Add one line (the `procs.LineSink` shape)."""
        line = self.scrub(line)
        self._tail.append(line)
        data = (line + "\n").encode()
        if len(self._buffer) + len(data) <= self.max_bytes:
            self._buffer += data
        elif not self._truncated:
            self._truncated = True
            self._buffer += b"[log truncated: larger than the builder keeps]\n"
        self._dirty.set()

    async def __aenter__(self) -> BuildLog:
        self._task = asyncio.create_task(self._flusher(), name=f"log-flush {self.key}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._put is not None:  # the flush under way goes on in its thread: let it land first,
            await asyncio.gather(self._put, return_exceptions=True)  # or it would overwrite the end
        if not await asyncio.shield(self._upload(complete=True)):
            self.finishing = asyncio.create_task(self._finish(), name=f"log-finish {self.key}")
            _FINISHING.add(self.finishing)
            self.finishing.add_done_callback(_FINISHING.discard)

    async def _finish(self) -> None:
        """Retry the last upload, backing off to 30 s, until S3 takes it (or `retry_for_seconds`
        pass: the log then stays as last uploaded, and the result's tail stands in for it)."""
        deadline = time.monotonic() + self.retry_for_seconds
        pause = self.retry_seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(pause)
            if await self._upload(complete=True, quiet=True):
                log.info("build log completed after a log store outage", extra={"key": self.key})
                return
            pause = min(pause * 2, 30.0)
        log.warning("build log left incomplete: the log store stayed down", extra={"key": self.key})

    async def _flusher(self) -> None:
        while True:
            await self._dirty.wait()
            await self._upload(complete=False)
            await asyncio.sleep(self.flush_seconds)

    async def _upload(self, *, complete: bool, quiet: bool = False) -> bool:
        """Whether the log went up; a failure is logged (at debug level when `quiet`)."""
        self._dirty.clear()
        try:
            self._put = asyncio.ensure_future(
                self.sink.put(self.key, bytes(self._buffer), complete=complete)
            )
            await asyncio.shield(self._put)  # a cancelled flusher leaves it to finish
        except Exception as exc:  # noqa: BLE001 - a log store outage must not fail the build
            log.log(
                logging.DEBUG if quiet else logging.WARNING,
                "build log upload failed",
                extra={"key": self.key, "error": type(exc).__name__},
            )
            return False
        self.uploaded = True
        return True
