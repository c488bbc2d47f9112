"""Uploads and downloads: streamed, checksummed, retried, several files at once.

Memory stays bounded whatever the size: bodies go out and come in one chunk at a time.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from .errors import SageConnectionError, SageError
from .http import Transport, quote_path
from .retry import RetryPolicy, with_retries

CHUNK = 1024 * 1024
DEFAULT_RETRY: RetryPolicy = RetryPolicy()
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class PlannedUpload:
    path: Path
    key: str
    size: int


@dataclass(frozen=True)
class UploadResult:
    path: Path
    key: str
    size: int
    sha256: str
    answer: dict[str, Any]


@dataclass(frozen=True)
class UploadFailure:
    path: Path
    key: str
    error: SageError


@dataclass
class UploadReport:
    uploaded: list[UploadResult] = field(default_factory=list)
    failed: list[UploadFailure] = field(default_factory=list)


class TransferObserver(Protocol):
    """What a progress display hears about each file of a batch."""

    def started(self, key: str, total: int) -> None: ...
    def advanced(self, key: str, done: int) -> None: ...
    def retrying(self, key: str, attempt: int, error: SageError) -> None: ...
    def finished(self, key: str, error: SageError | None) -> None: ...


class NullObserver:
    def started(self, key: str, total: int) -> None: ...
    def advanced(self, key: str, done: int) -> None: ...
    def retrying(self, key: str, attempt: int, error: SageError) -> None: ...
    def finished(self, key: str, error: SageError | None) -> None: ...


def _is_dir_key(key: str) -> bool:
    return not key or key.endswith("/")


def plan_upload(sources: list[Path], key: str = "") -> list[PlannedUpload]:
    """Map local paths to keys the way the SAGE storage client does.

    A file goes to `key`, or to `key` + its name when `key` is empty or ends in `/`; a directory
    goes, recursively, under `key` + its own name. Several sources need a directory key.
    """
    key = key.lstrip("/")
    if len(sources) > 1 and not _is_dir_key(key):
        raise SageError(0, f"with several sources the key must end in '/' (a folder), got {key!r}")
    plan: list[PlannedUpload] = []
    for source in sources:
        if source.is_file():
            target = key + source.name if _is_dir_key(key) else key
            plan.append(PlannedUpload(source, target, source.stat().st_size))
        elif source.is_dir():
            base = key if _is_dir_key(key) else key + "/"
            name = source.resolve().name
            for root, dirs, files in os.walk(source):
                dirs.sort()
                for filename in sorted(files):
                    path = Path(root, filename)
                    if path.is_file():
                        rel = path.relative_to(source).as_posix()
                        plan.append(PlannedUpload(path, f"{base}{name}/{rel}", path.stat().st_size))
        elif source.exists():
            raise SageError(0, f"not a regular file or directory: {source}")
        else:
            raise SageError(0, f"no such file or directory: {source}")
    seen: set[str] = set()
    for item in plan:
        if item.key in seen:
            raise SageError(0, f"two sources would upload to the same key {item.key!r}")
        seen.add(item.key)
    return plan


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


async def _chunks(path: Path, size: int, progress: Progress | None) -> AsyncIterator[bytes]:
    """The file's bytes, read off the event loop, with progress after each chunk sent."""
    done = 0
    with path.open("rb") as f:
        while chunk := await asyncio.to_thread(f.read, CHUNK):
            yield chunk
            done += len(chunk)
            if progress is not None:
                progress(done, size)


async def upload_file(
    t: Transport,
    bucket_path: str,
    path: Path,
    key: str,
    *,
    progress: Progress | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
    on_retry: Callable[[int, SageError], None] | None = None,
    sha256: str | None = None,
) -> dict[str, Any]:
    """`PUT {bucket}/{key}` with the file as a streamed raw body and its SHA-256 in a header."""
    key = key.lstrip("/")
    if _is_dir_key(key):
        key += path.name
    size = (await asyncio.to_thread(path.stat)).st_size
    digest = sha256 if sha256 else await asyncio.to_thread(_sha256, path)
    headers = {
        "Content-Type": "application/octet-stream",
        "Content-Length": str(size),
        "X-Checksum-SHA256": digest,
    }

    async def attempt() -> dict[str, Any]:
        if progress is not None:
            progress(0, size)
        answer = await t.request(
            "PUT",
            f"{bucket_path}/{quote_path(key)}",
            data=_chunks(path, size, progress),
            headers=headers,
        )
        return answer if isinstance(answer, dict) else {"key": "/" + key}

    return await with_retries(attempt, retry, on_retry)


async def upload_form(t: Transport, bucket_path: str, path: Path, key: str = "") -> dict[str, Any]:
    """The multipart form upload older SAGE clients use: one part named `file`."""
    with path.open("rb") as f:
        form = aiohttp.FormData()
        form.add_field("file", f, filename=path.name, content_type="application/octet-stream")
        answer: dict[str, Any] = await t.request(
            "PUT", f"{bucket_path}/{quote_path(key.lstrip('/'))}", data=form
        )
    return answer


async def upload_many(
    t: Transport,
    bucket_path: str,
    plan: list[PlannedUpload],
    *,
    concurrency: int = 4,
    observer: TransferObserver | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> UploadReport:
    """Upload every planned file, at most `concurrency` at a time; failures don't stop the rest."""
    obs = observer or NullObserver()
    gate = asyncio.Semaphore(max(1, concurrency))
    outcomes: dict[str, UploadResult | UploadFailure] = {}

    async def one(item: PlannedUpload) -> None:
        async with gate:
            obs.started(item.key, item.size)
            try:
                digest = await asyncio.to_thread(_sha256, item.path)
                answer = await upload_file(
                    t,
                    bucket_path,
                    item.path,
                    item.key,
                    retry=retry,
                    progress=lambda done, _total: obs.advanced(item.key, done),
                    on_retry=lambda n, err: obs.retrying(item.key, n, err),
                    sha256=digest,
                )
            except OSError as exc:
                error = SageError(0, f"{item.path}: {exc.strerror or exc}")
                outcomes[item.key] = UploadFailure(item.path, item.key, error)
                obs.finished(item.key, error)
            except SageError as exc:
                outcomes[item.key] = UploadFailure(item.path, item.key, exc)
                obs.finished(item.key, exc)
            else:
                outcomes[item.key] = UploadResult(item.path, item.key, item.size, digest, answer)
                obs.finished(item.key, None)

    await asyncio.gather(*(one(item) for item in plan))
    report = UploadReport()
    for item in plan:
        outcome = outcomes[item.key]
        if isinstance(outcome, UploadResult):
            report.uploaded.append(outcome)
        else:
            report.failed.append(outcome)
    return report


def download_target(key: str, target: str | Path | None) -> Path:
    """Where a download lands: `target`, or the key's file name inside `target` or here."""
    name = key.rstrip("/").rsplit("/", 1)[-1]
    if target is None:
        return Path(name)
    if str(target).endswith(("/", os.sep)) or Path(target).is_dir():
        return Path(target) / name
    return Path(target)


async def download(
    t: Transport,
    object_path: str,
    destination: Path,
    *,
    force: bool = False,
    progress: Progress | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> Path:
    """Stream to `<destination>.part` (resuming with `Range` after a break), then rename it."""
    part = _start_download(destination, force)

    async def attempt() -> None:
        offset = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        async with t.open("GET", object_path, headers=headers) as response:
            resumed = response.status == 206
            if not resumed:
                offset = 0
            length = response.content_length
            total = offset + length if length is not None else 0
            written = offset
            with part.open("ab" if resumed else "wb") as f:
                async for chunk in response.content.iter_chunked(CHUNK):
                    f.write(chunk)
                    written += len(chunk)
                    if progress is not None:
                        progress(written, total)
            if length is not None and "Content-Encoding" not in response.headers:
                if written != total:
                    raise SageConnectionError(f"the download stopped at {written} of {total} bytes")

    try:
        await with_retries(attempt, retry)
        _finish_download(part, destination, force)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return destination


def _start_download(destination: Path, force: bool) -> Path:
    if destination.exists() and not force:
        raise SageError(0, f"{destination} already exists; not overwriting it (use --force)")
    part = destination.with_name(destination.name + ".part")
    part.unlink(missing_ok=True)
    return part


def _finish_download(part: Path, destination: Path, force: bool) -> None:
    if destination.exists() and not force:
        raise SageError(0, f"{destination} appeared meanwhile; not overwriting it (use --force)")
    part.replace(destination)
