"""Reading build logs and ecr-meta files from the builder's bucket (`minio`, synchronous, so on
a small thread pool of its own). S3 errors stop here: a missing bucket or key is `None` (no log
yet), anything else is `Unavailable` (503, Retry-After).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import urllib3
from minio import Minio
from minio.error import InvalidResponseError, MinioException, S3Error

from sage_common.errors import Unavailable
from sage_common.s3 import s3_code

from .config import Config

log = logging.getLogger(__name__)

_RANGE_RE = re.compile(r"^bytes \d+-\d+/(\d+)$")
_MISSING = {"NoSuchKey", "NoSuchObject", "NoSuchBucket"}
WORKERS = 4
CHUNK_BYTES = 64 * 1024
ATTEMPTS = 5  # reads of an object that is being replaced, before giving up
REREAD_PAUSE = 0.05


@dataclass(frozen=True)
class LogObject:
    """Part of a log object: `data` from the offset asked, the whole object's `size` now."""

    data: bytes
    size: int
    marked_complete: bool  # the builder's `complete: true` metadata


class S3Stream:
    """An object being read: `size` from its headers, its bytes piece by piece on the pool."""

    def __init__(self, response: Any, pool: ThreadPoolExecutor) -> None:
        self._response, self._pool = response, pool
        self.size = int(response.headers.get("Content-Length", "-1"))

    async def chunks(self) -> AsyncIterator[bytes]:
        """The bytes, piece by piece; the caller closes the stream."""
        loop = asyncio.get_running_loop()
        while data := await loop.run_in_executor(self._pool, self._response.read, CHUNK_BYTES):
            yield data

    async def close(self) -> None:
        self._response.close()
        self._response.release_conn()


class _Grew(Exception):
    """The object grew past the offset between a read that found nothing and a stat."""


def _marked(headers: Any) -> bool:
    return str(headers.get("x-amz-meta-complete", "")).lower() == "true"


class S3LogReader:
    """Ranged reads of log objects; a log is rewritten whole while it grows, never shortened."""

    def __init__(self, client: Minio, *, workers: int = WORKERS) -> None:
        self.client = client
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="s3-logs")

    @classmethod
    def from_config(cls, config: Config) -> S3LogReader:
        http = urllib3.PoolManager(
            maxsize=WORKERS,
            timeout=urllib3.Timeout(connect=config.s3_timeout, read=config.s3_timeout),
            # A log store that is down must answer quickly as a 503, not after a long back-off.
            retries=urllib3.Retry(total=1, connect=1, read=0, status=0, backoff_factor=0.1),
        )
        client = Minio(
            config.s3_endpoint,
            access_key=config.s3_access_key,
            secret_key=config.s3_secret_key.get_secret_value(),
            secure=config.s3_secure,
            region=config.s3_region,
            http_client=http,
        )
        return cls(client)

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def read(self, bucket: str, key: str, offset: int, length: int) -> LogObject | None:
        """At most `length` bytes from `offset` (none past the end); None when there is no log."""
        loop = asyncio.get_running_loop()
        call = functools.partial(self._read, bucket, key, offset, max(1, length))
        try:
            return await loop.run_in_executor(self._pool, call)
        except (MinioException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            if isinstance(exc, (urllib3.exceptions.HTTPError, OSError)):
                log.warning("build log store unreachable: %s", type(exc).__name__)
            else:
                log.error("build log store refused a read: %s", s3_code(exc) or type(exc).__name__)
            raise Unavailable(
                "the build log store is unavailable, try again", retry_after=5
            ) from None

    async def open(self, bucket: str, key: str) -> S3Stream | None:
        """The whole object, opened for reading; None when there is none."""
        loop = asyncio.get_running_loop()
        try:
            response = await loop.run_in_executor(
                self._pool, functools.partial(self.client.get_object, bucket, key)
            )
        except (S3Error, InvalidResponseError) as exc:
            if s3_code(exc) in _MISSING:
                return None
            log.error("file store refused a read: %s", s3_code(exc) or type(exc).__name__)
            raise Unavailable("the file store is unavailable, try again", retry_after=5) from None
        except (MinioException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            log.warning("file store unreachable: %s", type(exc).__name__)
            raise Unavailable("the file store is unavailable, try again", retry_after=5) from None
        return S3Stream(response, self._pool)

    def _read(self, bucket: str, key: str, offset: int, length: int) -> LogObject | None:
        for _ in range(ATTEMPTS):
            try:
                return self._get(bucket, key, offset, length)
            except urllib3.exceptions.ProtocolError:
                # An answer cut short: the object was replaced while it was sent (rclone does).
                time.sleep(REREAD_PAUSE)
            except _Grew:
                pass
        return self._stat(bucket, key)

    def _get(self, bucket: str, key: str, offset: int, length: int) -> LogObject | None:
        try:
            response = self.client.get_object(bucket, key, offset=offset, length=length)
        except (S3Error, InvalidResponseError) as exc:
            code = s3_code(exc)
            if code in _MISSING:
                return None
            if code != "InvalidRange":
                raise
            # Nothing at or after `offset`: the size and mark now, unless it grew meanwhile.
            found = self._stat(bucket, key)
            if found is not None and found.size > offset:
                raise _Grew() from None
            return found
        try:
            data = response.read()
        finally:
            response.close()
            response.release_conn()
        total = _RANGE_RE.match(response.headers.get("Content-Range", ""))
        marked = _marked(response.headers)
        if total is None:  # a server that ignored the range sent the whole object
            return LogObject(data[offset : offset + length], len(data), marked)
        return LogObject(data[:length], int(total.group(1)), marked)

    def _stat(self, bucket: str, key: str) -> LogObject | None:
        try:
            stat = self.client.stat_object(bucket, key)
        except (S3Error, InvalidResponseError) as exc:
            if s3_code(exc) in _MISSING:
                return None
            raise
        return LogObject(b"", int(stat.size or 0), _marked(stat.metadata or {}))
