"""Background loops that never die silently: a loop that fails is logged and restarted with
back-off; one that keeps failing is given up on, and liveness (`/healthz`) then fails so that the
orchestrator restarts the process.

Progress is tracked beside it: a loop calls `Supervised.beat()` after each good pass, and
readiness asks `stalled()` whether the last good pass is older than the stall threshold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


def describe(exc: BaseException) -> str:
    """`Type: message`, short, for logs and health answers (no traceback, no internals)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    name = type(exc).__name__
    return f"{name}: {text[:200]}" if text else name


class Supervised:
    """Runs `run()` in a task; restarts it when it raises, at most `max_failures` times in
    `window` seconds (then it is dead: `alive` is False and `dead_reason` says why). A loop that
    returns has finished (it was asked to stop)."""

    def __init__(
        self,
        name: str,
        run: Callable[[], Awaitable[None]],
        *,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_failures: int = 10,
        window: float = 600.0,
    ) -> None:
        self.name = name
        self._run = run
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_failures = max_failures
        self.window = window
        self.restarts = 0
        self.dead_reason: str | None = None
        self.last_beat = time.monotonic()
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._failures: deque[float] = deque()

    def start(self) -> None:
        self.dead_reason = None
        self.last_beat = time.monotonic()
        self._task = asyncio.create_task(self._guard(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    @property
    def alive(self) -> bool:
        """Running, or waiting to be restarted; False once given up on (or never started)."""
        return self._task is not None and not self._task.done() and self.dead_reason is None

    def beat(self) -> None:
        """Record a good pass (the loop makes progress)."""
        self.last_beat = time.monotonic()
        self.last_error = None

    def failed(self, exc: BaseException) -> None:
        """Record a failed pass that the loop itself retries (an outage)."""
        self.last_error = describe(exc)

    def stalled(self, seconds: float) -> str | None:
        """Why the loop counts as stuck (no good pass for `seconds`), or None."""
        if not self.alive:
            return f"{self.name} is not running: {self.dead_reason or 'stopped'}"
        idle = time.monotonic() - self.last_beat
        if idle <= seconds:
            return None
        why = f"; last error {self.last_error}" if self.last_error else ""
        return f"{self.name} made no progress for {idle:.0f} s{why}"

    async def _guard(self) -> None:
        delay = self.backoff
        while True:
            try:
                await self._run()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - logged, counted, restarted
                now = time.monotonic()
                self._failures.append(now)
                while self._failures and now - self._failures[0] > self.window:
                    self._failures.popleft()
                self.last_error = describe(exc)
                if len(self._failures) > self.max_failures:
                    self.dead_reason = f"failed {len(self._failures)} times: {self.last_error}"
                    log.critical(
                        "background task keeps failing; giving up (liveness fails)",
                        exc_info=exc,
                        extra={"task": self.name, "error": self.last_error},
                    )
                    return
                self.restarts += 1
                log.error(
                    "background task died; restarting",
                    exc_info=exc,
                    extra={"task": self.name, "error": self.last_error, "retry_in": delay},
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_backoff)
