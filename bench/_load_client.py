"""`python -m bench._load_client`: the load of `bench._load.get_load`, from a process of its own.

Reads one JSON object on stdin (targets: name -> URLs, headers, clients, warmup_seconds,
run_seconds, rounds) and prints one: each target's requests per second, p50 and p99 (ms). Each
target keeps its session (its connections) from one round to the next.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import aiohttp

from bench._load import latency_ms, measure


async def run(spec: dict[str, Any]) -> dict[str, dict[str, float]]:
    clients = spec["clients"]
    sessions = {
        name: aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=clients), headers=spec["headers"]
        )
        for name in spec["targets"]
    }
    windows: dict[str, tuple[list[float], list[float]]] = {n: ([], []) for n in sessions}
    try:
        for _ in range(spec["rounds"]):
            for name, urls in spec["targets"].items():

                async def one(http: aiohttp.ClientSession, i: int, urls: list[str] = urls) -> None:
                    async with http.get(urls[i % len(urls)]) as resp:
                        await resp.read()
                        if resp.status != 200:
                            raise RuntimeError(f"GET {resp.url} answered {resp.status}")

                latencies, elapsed = await measure(
                    one,
                    sessions[name],
                    clients=clients,
                    warmup_seconds=spec["warmup_seconds"],
                    run_seconds=spec["run_seconds"],
                )
                windows[name][0].extend(latencies)
                windows[name][1].append(elapsed)
    finally:
        for http in sessions.values():
            await http.close()
    return {
        name: {"rps": len(latencies) / sum(elapsed), **latency_ms(latencies)}
        for name, (latencies, elapsed) in windows.items()
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(json.load(sys.stdin)))))
