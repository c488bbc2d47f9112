"""Test data: a bucket (and prefix) of the SAGE object store, copied to a local directory.

Fetched through the storage service's HTTP API with the profiler's token, so the object store's
permissions apply; the directory is then mounted read-only into the container.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp

from .spec import TestData

log = logging.getLogger(__name__)


class TestDataError(Exception):
    """The data cannot be had (missing, forbidden, too large): the profile fails for it."""

    __test__ = False


class TestDataUnavailable(Exception):
    """The object store did not answer: worth retrying later."""

    __test__ = False


class TestDataSource(Protocol):
    async def fetch(self, data: TestData, dest: Path) -> int:
        """Copy every object under the prefix into `dest`; return the bytes copied."""


def safe_relative(key: str) -> PurePosixPath:
    """A key as a relative path that cannot leave the destination directory."""
    path = PurePosixPath(key.lstrip("/"))
    if not path.parts or any(part in ("..", ".", "") for part in path.parts):
        raise TestDataError(f"refusing object key {key!r}")
    return path


class StorageHttpSource:
    """The storage service's SAGE-compatible HTTP API."""

    def __init__(
        self, base_url: str, token: str = "", *, max_bytes: int = 2 << 30, timeout: float = 60.0
    ) -> None:
        self.base = base_url.rstrip("/") + "/api/v1/objects"
        self.headers = {"Authorization": f"sage {token}"} if token else {}
        self.max_bytes = max_bytes
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=timeout)

    async def fetch(self, data: TestData, dest: Path) -> int:
        prefix = data.prefix.strip("/")
        prefix = prefix + "/" if prefix else ""
        total = 0
        try:
            async with aiohttp.ClientSession(timeout=self.timeout, headers=self.headers) as http:
                keys = await self._list(http, data.bucket, prefix)
                if not keys:
                    raise TestDataError(f"no objects under sage://{data.bucket}/{prefix}")
                for key, size in keys:
                    total += size
                    if total > self.max_bytes:
                        raise TestDataError(
                            f"test data is larger than the {self.max_bytes} bytes allowed"
                        )
                    target = dest / safe_relative(key)
                    await self._download(http, data.bucket, prefix + key, target)
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise TestDataUnavailable(f"the object store is unreachable: {exc}") from None
        return total

    async def _list(
        self, http: aiohttp.ClientSession, bucket: str, prefix: str
    ) -> list[tuple[str, int]]:
        url = f"{self.base}/{quote(bucket)}/{quote(prefix)}"
        params: dict[str, str] = {"recursive": "true", "limit": "1000"}
        found: list[tuple[str, int]] = []
        while True:
            async with http.get(url, params=params) as resp:
                await self._check(resp, f"sage://{bucket}/{prefix}")
                body: dict[str, Any] = await resp.json()
            found += [(c["Key"], int(c.get("Size", 0))) for c in body.get("Contents") or []]
            token = body.get("NextContinuationToken")
            if not body.get("IsTruncated") or not token:
                return found
            params["ContinuationToken"] = token

    async def _download(
        self, http: aiohttp.ClientSession, bucket: str, key: str, target: Path
    ) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        async with http.get(f"{self.base}/{quote(bucket)}/{quote(key)}") as resp:
            await self._check(resp, f"sage://{bucket}/{key}")
            with target.open("wb") as out:  # noqa: ASYNC230 - chunks are small, the disk is local
                async for chunk in resp.content.iter_chunked(1 << 20):
                    out.write(chunk)

    async def _check(self, resp: aiohttp.ClientResponse, what: str) -> None:
        if resp.status == 200:
            return
        if resp.status >= 500:
            raise TestDataUnavailable(f"the object store answered {resp.status} for {what}")
        if resp.status in (401, 403, 404):
            raise TestDataError(f"{what} does not exist or the profiler may not read it")
        raise TestDataError(f"the object store answered {resp.status} for {what}")


@contextlib.asynccontextmanager
async def staged(
    source: TestDataSource, data: TestData | None, work_dir: Path | None = None
) -> AsyncIterator[Path | None]:
    """A readable temporary directory holding the test data (None without data), then removed."""
    if data is None:
        yield None
        return
    tmp = await asyncio.to_thread(tempfile.mkdtemp, prefix="sage-testdata-", dir=work_dir)
    root = Path(tmp)
    try:
        await source.fetch(data, root)
        await asyncio.to_thread(_readable, root)
        yield root
    finally:
        await asyncio.to_thread(shutil.rmtree, root, True)


def _readable(root: Path) -> None:
    """Let any user in the container read the data (the mount is read-only anyway)."""
    root.chmod(0o755)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
