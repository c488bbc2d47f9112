"""Start servers as child processes on loopback for the side-by-side bench, and stop them.

A server that exits before it answers is reported with the last lines it printed, so that a
checkout that lacks something says what.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp


class ServerFailed(RuntimeError):
    """The server exited or did not answer in time; the message carries its last output."""


def _tail(log: Path, lines: int = 15) -> str:
    text = log.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


@asynccontextmanager
async def child_server(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    ready_url: str,
    cwd: Path | None = None,
    start_seconds: float = 60.0,
) -> AsyncIterator[None]:
    """Run `argv` until the block ends; enter once `ready_url` answers 200."""
    with tempfile.NamedTemporaryFile(prefix="sage-bench-server-", suffix=".log") as log:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            await _wait_ready(proc, ready_url, Path(log.name), start_seconds)
            yield
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 15)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


async def _wait_ready(proc: asyncio.subprocess.Process, url: str, log: Path, within: float) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise ServerFailed(f"exited with {proc.returncode}:\n{_tail(log)}")
            try:
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.3)
    raise ServerFailed(f"no answer from {url} within {within:.0f} s:\n{_tail(log)}")
