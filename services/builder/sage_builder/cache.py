"""Layer caches, one buildah storage per tenant and source repository, under a cap on their size.

A repository's second build finds its layers in its own storage (`buildah build --layers`), so
builds of unrelated repositories never share or evict each other's layers mid-build. Tenants (ECR
namespaces) building the same URL get separate caches: a layer one of them made, or a file a RUN
step left in the store, never reaches another's image. When the caches together pass the cap,
whole caches go, the least recently used first, never one in use.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

log = logging.getLogger(__name__)
IdleHook = Callable[[Path], Awaitable[None]]

_STAMP = ".last-used"


def cache_key(url: str, tenant: str = "") -> str:
    """A stable directory name for a tenant's repository URL (credentials and `.git` ignored)."""
    normal = url.strip().rstrip("/").removesuffix(".git").lower()
    scheme, sep, rest = normal.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        normal = scheme + "://" + rest.split("@", 1)[1]
    return hashlib.sha256(f"{tenant}\0{normal}".encode()).hexdigest()[:24]


def directory_size(path: Path) -> int:
    """Bytes of the files under `path`, links not followed."""
    total = 0
    for dirpath, _dirs, files in os.walk(path, followlinks=False):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _touch(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / _STAMP).touch()


def unmount_under(path: Path) -> None:
    """Detach what is mounted at or below `path` (an overlay a killed buildah left mounted),
    deepest first, before it is deleted, so nothing beneath is touched."""
    prefix = str(path.resolve())
    try:
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4].replace("\\040", " ") for line in f]
    except OSError:
        return
    inside = [p for p in points if p == prefix or p.startswith(prefix + "/")]
    for point in sorted(inside, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)  # noqa: S603, S607


class LayerCache:
    """Hands out per-repository storage directories and keeps their total under `max_bytes`."""

    def __init__(self, root: Path, max_bytes: int, on_idle: IdleHook | None = None) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.on_idle = on_idle
        self._in_use: Counter[str] = Counter()
        self._lock = asyncio.Lock()
        self._tidying: dict[str, asyncio.Lock] = {}

    @contextlib.asynccontextmanager
    async def use(self, url: str, tenant: str = "") -> AsyncIterator[Path]:
        """The storage directory for `tenant`'s `url`, safe from eviction while held; when its last
        user here lets go, `on_idle` tidies what a stopped build left, before a new user gets it."""
        key = cache_key(url, tenant)
        path = self.root / key
        tidy_lock = self._tidying.setdefault(key, asyncio.Lock())
        async with tidy_lock, self._lock:
            self._in_use[key] += 1
            _touch(path)
        try:
            yield path
        finally:
            await asyncio.shield(self._release(key, path, tidy_lock))

    async def _release(self, key: str, path: Path, tidy_lock: asyncio.Lock) -> None:
        _touch(path)
        if self.on_idle is not None and self._in_use[key] == 1:
            async with tidy_lock:
                if self._in_use[key] == 1:
                    try:
                        await self.on_idle(path)
                    except Exception:  # noqa: BLE001 - tidying is best effort
                        log.warning("layer cache tidy failed", extra={"cache": key}, exc_info=True)
        async with self._lock:
            self._in_use -= Counter([key])  # a key whose count reaches 0 goes
        await self.evict()

    async def evict(self) -> list[str]:
        """Remove the least recently used idle caches until the total fits; return their keys."""
        async with self._lock:
            return await asyncio.to_thread(self._evict, set(self._in_use))

    def _evict(self, busy: set[str]) -> list[str]:
        if not self.root.is_dir():
            return []
        entries = []
        for path in self.root.iterdir():
            if path.is_dir():
                stamp = path / _STAMP
                used = stamp.stat().st_mtime if stamp.exists() else 0.0
                entries.append((used, path, directory_size(path)))
        total = sum(size for _, _, size in entries)
        removed: list[str] = []
        for _used, path, size in sorted(entries, key=lambda e: e[0]):
            if total <= self.max_bytes:
                break
            if path.name in busy:
                continue
            started = time.monotonic()
            unmount_under(path)
            shutil.rmtree(path, ignore_errors=True)
            total -= size
            removed.append(path.name)
            log.info(
                "layer cache evicted",
                extra={
                    "cache": path.name,
                    "bytes": size,
                    "seconds": round(time.monotonic() - started, 2),
                },
            )
        return removed
