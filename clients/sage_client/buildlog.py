"""A build's log as text from the ECR, read by byte offset so that a follower gets each byte once.

`GET /api/apps/{ns}/{name}/{version}/logs?format=text&offset=N` answers the bytes after the first
N and, in headers, the log's size, whether the build has finished, and which build it is.
`follow_log` asks again from where it got to until the build has finished; when a rebuild replaces
the build, or the builder started the build over, it starts again from the top of the new log.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from .errors import SageError
from .http import Transport
from .retry import RetryPolicy, with_retries


class LogTextUnsupported(SageError):
    """The server answered the text form with JSON: an ECR from before text logs."""

    def __init__(self) -> None:
        super().__init__(0, "this ECR serves no text build logs")

    @property
    def retryable(self) -> bool:
        return False


@dataclass(frozen=True)
class LogChunk:
    """Bytes of the log from `offset`, and where the log stands now."""

    data: bytes
    offset: int
    size: int
    complete: bool
    build_id: str | None = None
    build_number: int | None = None

    @property
    def next_offset(self) -> int:
        return self.offset + len(self.data)


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


async def read_log_chunk(transport: Transport, path: str, offset: int = 0) -> LogChunk:
    """One answer of the text form, from `offset`."""
    params: dict[str, str | int] = {"format": "text", "offset": offset}
    async with transport.open(
        "GET", path, params=params, headers={"Accept": "text/plain"}
    ) as response:
        if response.content_type == "application/json":
            await response.read()
            raise LogTextUnsupported()
        data = await response.read()
        headers = response.headers
    number = headers.get("X-Build-Number")
    return LogChunk(
        data=data,
        offset=offset,
        size=_int(headers.get("X-Log-Size"), offset + len(data)),
        complete=headers.get("X-Build-Complete", "").lower() == "true",
        build_id=headers.get("X-Build-Id"),
        build_number=_int(number, 0) if number is not None else None,
    )


async def follow_log(
    read: Callable[[int], Awaitable[LogChunk]],
    *,
    follow: bool = True,
    interval: float = 2.0,
    retry: RetryPolicy | None = None,
    on_restart: Callable[[str], None] | None = None,
) -> AsyncIterator[LogChunk]:
    """Each chunk with new bytes, in order, and the last (maybe empty) one, whose `complete` says
    whether the build has finished; without `follow`, only what is there now.

    `on_restart` hears why the log starts again from the top (a new build, a build started over).
    """
    offset, build_id = 0, None
    while True:
        this_read = functools.partial(read, offset)
        chunk = await (with_retries(this_read, retry) if retry else this_read())
        if build_id is not None and chunk.build_id != build_id:
            if on_restart is not None:
                on_restart(f"build {chunk.build_number or '?'} replaced the one followed")
            offset, build_id = 0, chunk.build_id
            continue
        build_id = chunk.build_id
        if chunk.size < offset:
            if on_restart is not None:
                on_restart("the build started over")
            offset = 0
            continue
        if chunk.data:
            offset = chunk.next_offset
        more = bool(chunk.data) and offset < chunk.size  # there already: no need to wait
        last = not more and (chunk.complete or not follow)
        if chunk.data or last:
            yield chunk
        if last:
            return
        if not more:
            await asyncio.sleep(interval)
