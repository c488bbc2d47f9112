"""Child processes (git, buildah) whose output is streamed line by line and which stop when asked.

A cancelled or timed-out build cancels the coroutine awaiting `run`; the child then gets SIGTERM
(buildah tears its RUN container down on it), and SIGKILL if it has not left after a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

LineSink = Callable[[str], None]
TERM_GRACE_SECONDS = 10.0
_LINE_LIMIT = 1 << 20


@dataclass(frozen=True)
class Completed:
    """What a child process left behind: its exit status and its output (stdout + stderr)."""

    returncode: int
    output: str


async def _pump(stream: asyncio.StreamReader, sink: LineSink | None, keep: list[str]) -> None:
    while True:
        try:
            raw = await stream.readline()
        except ValueError:  # a line over the limit: take what is buffered as one line
            raw = await stream.read(_LINE_LIMIT)
        if not raw:
            return
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        keep.append(line)
        if sink is not None:
            sink(line)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), TERM_GRACE_SECONDS)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def run(
    argv: Sequence[str],
    *,
    sink: LineSink | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> Completed:
    """Run `argv` to its end, feeding each output line to `sink`; stop the child if cancelled."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        limit=_LINE_LIMIT,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    try:
        await _pump(proc.stdout, sink, lines)
        returncode = await proc.wait()
    except BaseException:
        await asyncio.shield(_stop(proc))
        raise
    return Completed(returncode, "\n".join(lines))
