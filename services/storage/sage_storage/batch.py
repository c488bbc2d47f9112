"""Group commit: calls arriving while one runs go together in the next; a lone call runs at once.

Commits into one bucket all update its row, so they run one after another, each waiting for its
own WAL flush (200 small uploads at once: 200 flushes in a row); batched, a burst costs a few
transactions. Reads batch too (a bucket's lookup for one caller): a call joins only a query that
has not started, so it sees every change made before it arrived, and 200 requests cost a few
queries instead of queueing 20 deep for the pool's connections.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
I = TypeVar("I")  # noqa: E741 - an item
R = TypeVar("R")


class Batcher(Generic[K, I, R]):
    """`run(key, items)` answers one result per item, in order; at most one runs per key."""

    def __init__(self, run: Callable[[K, list[I]], Awaitable[list[R]]], max_items: int) -> None:
        self._run, self._max = run, max_items
        self._queued: dict[K, list[tuple[I, asyncio.Future[R]]]] = {}
        self._running: dict[K, asyncio.Task[None]] = {}

    async def submit(self, key: K, item: I) -> R:
        """The result for `item`, from the next batch of `key` (or raises what that batch raised).

        Cancelling the caller does not take the item out: its batch may already be running.
        """
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queued.setdefault(key, []).append((item, future))
        if key not in self._running:
            self._running[key] = asyncio.create_task(self._drain(key))
        return await asyncio.shield(future)

    async def _drain(self, key: K) -> None:
        try:
            while queue := self._queued.get(key):
                batch, self._queued[key] = queue[: self._max], queue[self._max :]
                try:
                    results = await self._run(key, [item for item, _ in batch])
                except BaseException as exc:  # every waiter gets the batch's error
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                            future.exception()  # retrieved: a cancelled waiter leaves no warning
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            del self._running[key]
            left = self._queued.pop(key, [])
            for _, future in left:  # only when cancelled (at shutdown): nothing ran them
                if not future.done():
                    future.cancel()
