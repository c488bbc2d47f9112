"""Retries with exponential back-off for transfers, which are idempotent and worth a second try."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from .errors import SageError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry 5xx answers and broken connections."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 20.0

    def delay(self, attempt: int, error: SageError) -> float:
        """Seconds before the next attempt: the server's Retry-After, else jittered back-off."""
        if error.retry_after is not None:
            return min(error.retry_after, self.max_delay)
        backoff = self.base_delay * (2 ** (attempt - 1))
        return min(backoff, self.max_delay) * random.uniform(0.5, 1.0)  # noqa: S311 - jitter


async def with_retries(
    operation: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    on_retry: Callable[[int, SageError], None] | None = None,
) -> T:
    """Run `operation` until it succeeds, fails for good, or the attempts are spent."""
    attempt = 1
    while True:
        try:
            return await operation()
        except SageError as exc:
            if not exc.retryable or attempt >= policy.attempts:
                raise
            if on_retry is not None:
                on_retry(attempt, exc)
            await asyncio.sleep(policy.delay(attempt, exc))
            attempt += 1
