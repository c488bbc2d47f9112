"""The closed-loop load generator and the latency percentiles the benchmarks report.

One definition of p50/p99 for every bench (nearest rank: the smallest sample at or above that
share of all samples), so that a service and its baseline, and one bench and another, are measured
the same way.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence

import aiohttp

Request = Callable[[aiohttp.ClientSession, int], Awaitable[None]]


def percentile(ordered: Sequence[float], share: float) -> float:
    """The nearest-rank percentile of already sorted samples (`share` 0.99 for p99)."""
    if not ordered:
        raise ValueError("no samples")
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def latency_ms(latencies: Sequence[float]) -> dict[str, float]:
    """p50 and p99 in milliseconds of latencies in seconds."""
    ordered = sorted(latencies)
    return {"p50": percentile(ordered, 0.50) * 1000, "p99": percentile(ordered, 0.99) * 1000}


async def closed_loop(
    request: Request,
    *,
    clients: int,
    warmup_seconds: float,
    run_seconds: float,
    headers: dict[str, str] | None = None,
) -> dict[str, float]:
    """`clients` workers each repeating `request(http, i)` back to back (i counts from the
    worker's number up); requests per second, p50 and p99 of those in the measured window.

    `request` raises when an answer is wrong: that stops the run rather than counting it.
    """
    latencies: list[float] = []
    counting = stop = False
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:

        async def worker(i: int) -> None:
            while not stop:
                started = time.perf_counter()
                await request(http, i)
                if counting:
                    latencies.append(time.perf_counter() - started)
                i += 1

        tasks = [asyncio.create_task(worker(n)) for n in range(clients)]
        await asyncio.sleep(warmup_seconds)
        counting, begin = True, time.perf_counter()
        await asyncio.sleep(run_seconds)
        counting, elapsed = False, time.perf_counter() - begin
        stop = True
        await asyncio.gather(*tasks)
    return {"rps": len(latencies) / elapsed, **latency_ms(latencies)}
