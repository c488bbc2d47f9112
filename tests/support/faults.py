"""Helpers for the fault suite (tests/faults/) and the recovery benchmark: real service processes
that a test kills with SIGKILL and starts again, and a watch on a service's readiness while a fault
lasts.

`ServiceProcess` runs `python -m <package>` with a pydantic config as its environment, in its own
process group (as a pod runs it), so `kill()` takes its children (buildah, workers) with it.
`Readiness` polls `/readyz` in the background and keeps every answer with the time it was asked,
so a test can say what readiness was while the fault lasted, and after.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import BaseModel, SecretStr

ROOT = Path(__file__).resolve().parents[2]
DOWN = 0  # what `Readiness` records when nothing answers (the process is gone)


def config_env(prefix: str, config: BaseModel) -> dict[str, str]:
    """`config` as the `<prefix>*` environment of a service process (None left to its default)."""
    env = {}
    for name, value in config.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, list | dict):
            text = json.dumps(value, default=_plain)
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        env[f"{prefix}{name.upper()}"] = text
    return env


def _plain(value: object) -> str:
    return value.get_secret_value() if isinstance(value, SecretStr) else str(value)


@dataclass
class ServiceProcess:
    """`python -m <module>` on `config` (which has a `port`), in its own process group."""

    module: str
    prefix: str
    config: Any
    log: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    pids: list[int] = field(default_factory=list)  # every pid it ran as, for the record

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.config.port}"

    def start(self) -> None:
        env = {"PATH": os.environ["PATH"], "HOME": str(self.log.parent)}
        env.update(config_env(self.prefix, self.config))
        env.update(self.extra_env)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(  # noqa: S603 - this interpreter, a fixed module
                [sys.executable, "-m", self.module],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pids.append(self.proc.pid)

    def kill(self) -> None:
        """SIGKILL to the whole process group, as the OOM killer or a lost node would."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    async def ready(self, http: aiohttp.ClientSession, within: float = 60.0) -> None:
        """Wait until `/readyz` answers 200; fail with the log's tail if the process exits."""
        deadline = time.monotonic() + within
        while await readyz(http, self.url) != 200:
            assert self.exited() is None, f"{self.module} exited:\n{self.tail()}"
            assert time.monotonic() < deadline, f"{self.module} never ready:\n{self.tail()}"
            await asyncio.sleep(0.1)


async def readyz(http: aiohttp.ClientSession, url: str) -> int:
    """The status `/readyz` answers, or DOWN when nothing answers."""
    try:
        async with http.get(f"{url}/readyz", timeout=aiohttp.ClientTimeout(total=2)) as r:
            return r.status
    except (aiohttp.ClientError, TimeoutError):
        return DOWN


@dataclass
class Readiness:
    """Every `/readyz` answer of `url` while watched: (time asked, status or DOWN)."""

    http: aiohttp.ClientSession
    url: str
    every: float = 0.1
    answers: list[tuple[float, int]] = field(default_factory=list)

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[Readiness]:
        task = asyncio.create_task(self._poll())
        try:
            yield self
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _poll(self) -> None:
        while True:
            asked = time.monotonic()
            self.answers.append((asked, await readyz(self.http, self.url)))
            await asyncio.sleep(self.every)

    def between(self, start: float, end: float) -> list[int]:
        return [status for at, status in self.answers if start <= at <= end]

    def first_ready_after(self, start: float) -> float | None:
        return next((at for at, status in self.answers if at >= start and status == 200), None)

    def assert_out_during(
        self, start: float, end: float, *, expect: int, grace: float = 1.0
    ) -> None:
        """Readiness was never 200 while the fault lasted (from `grace` s after it began), and
        answered `expect` (503, or DOWN for a killed process) at least once then."""
        seen = self.between(start + grace, end)
        assert seen, "readiness was not asked while the fault lasted"
        assert 200 not in seen and expect in seen, (expect, seen)

    def assert_ready_after(self, start: float) -> float:
        """Readiness came back to 200 after `start` and stayed; the seconds it took."""
        back = self.first_ready_after(start)
        assert back is not None, self.between(start, time.monotonic())
        assert set(self.between(back, time.monotonic())) == {200}, self.between(back, 1e18)
        return back - start
