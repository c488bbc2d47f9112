"""The closed-loop load generator and the latency percentiles the benchmarks report.

`closed_loop` runs in the caller's event loop; `get_load` runs the same loop of GETs from a process
of its own (`bench._load_client`), so that a server measured in this process does not also pay
for its clients.
One definition of p50/p99 for every bench (nearest rank: the smallest sample at or above that
share of all samples), so that a service and its baseline, and one bench and another, are measured
the same way.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

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
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:
        latencies, elapsed = await measure(
            request, http, clients=clients, warmup_seconds=warmup_seconds, run_seconds=run_seconds
        )
    return {"rps": len(latencies) / elapsed, **latency_ms(latencies)}


async def measure(
    request: Request,
    http: aiohttp.ClientSession,
    *,
    clients: int,
    warmup_seconds: float,
    run_seconds: float,
) -> tuple[list[float], float]:
    """One window of `closed_loop` on a session the caller keeps: each latency in it (seconds)
    and its length."""
    latencies: list[float] = []
    counting = stop = False

    async def worker(i: int) -> None:
        while not stop:
            started = time.perf_counter()
            await request(http, i)
            if counting:
                latencies.append(time.perf_counter() - started)
            i += 1

    tasks = [asyncio.create_task(worker(n)) for n in range(clients)]
    try:
        await asyncio.sleep(warmup_seconds)
        counting, begin = True, time.perf_counter()
        await asyncio.sleep(run_seconds)
        counting, elapsed = False, time.perf_counter() - begin
        stop = True
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
    return latencies, elapsed


async def get_load(
    targets: dict[str, list[str]],
    *,
    clients: int,
    warmup_seconds: float,
    run_seconds: float,
    rounds: int,
    headers: dict[str, str] | None = None,
) -> dict[str, dict[str, float]]:
    """`closed_loop` GETs of each target's URLs (cycled through) from a process of its own
    (`bench._load_client`), the targets taken in turn `rounds` times over; requests per second,
    p50 and p99 of each target over its measured windows.

    In its own process the load generator's work is not charged to the server it measures, and
    taking the targets in turn spreads this shared machine's other load over all of them alike.
    """
    spec = {
        "targets": targets,
        "headers": headers or {},
        "clients": clients,
        "warmup_seconds": warmup_seconds,
        "run_seconds": run_seconds,
        "rounds": rounds,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench._load_client",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=Path(__file__).parent.parent,
    )
    out, _ = await proc.communicate(json.dumps(spec).encode())
    if proc.returncode != 0:
        raise RuntimeError(f"the load client exited with {proc.returncode}")
    found: dict[str, dict[str, float]] = json.loads(out)
    return found
