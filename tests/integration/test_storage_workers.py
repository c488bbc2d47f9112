"""`python -m sage_storage` with several worker processes on one port (SO_REUSEPORT).

The service runs as it does in production, as a process of its own, on the real Postgres and S3:
the supervisor starts the workers it was told to, every answer on the port comes from one of them,
`/metrics` on any of them counts what all of them served, and SIGTERM stops them all.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from tests.fixtures.s3 import S3Server, free_port

ROOT = Path(__file__).resolve().parents[2]


def _workers(pid: int) -> list[int]:
    """The worker processes of the supervisor `pid` (not multiprocessing's resource tracker)."""
    children = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return [c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "sage_storage"], env=env, stdout=out, stderr=out, cwd=ROOT
        )


def _alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


async def _get(url: str) -> tuple[int, str]:
    """One request on a connection of its own, so that the kernel picks a worker each time."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        async with http.get(url) as r:
            return r.status, await r.text()


def _healthz_count(metrics: str) -> float:
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith("sage_http_requests_total{") and 'route="/healthz"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_two_workers_share_the_port_and_their_metrics_and_stop_on_sigterm(
    database_url: str, s3_server: S3Server, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "SAGE_STORAGE_WORKERS": "2",
        "SAGE_STORAGE_PORT": str(port),
        "SAGE_STORAGE_DATABASE_URL": database_url,
        "SAGE_STORAGE_DB_SCHEMA": "storage_workers",
        "SAGE_STORAGE_S3_ENDPOINT": s3_server.endpoint,
        "SAGE_STORAGE_S3_ACCESS_KEY": s3_server.access_key,
        "SAGE_STORAGE_S3_SECRET_KEY": s3_server.secret_key,
        "SAGE_STORAGE_S3_BUCKET": "sage-workers-test",
    }
    log = tmp_path / "storage.log"
    proc = _start(env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if (await _get(f"{url}/readyz"))[0] == 200:
                    break
            except aiohttp.ClientError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            await asyncio.sleep(0.2)
        workers = _workers(proc.pid)
        assert len(workers) == 2
        started = log.read_text()
        assert re.search(r'"workers": 2, "workers_why": "SAGE_STORAGE_WORKERS"', started)

        for _ in range(40):
            assert (await _get(f"{url}/healthz"))[0] == 200
        # Each answer from whichever worker the kernel picked counts both workers' requests;
        # per-process metrics would answer each worker's share, which differs between them.
        counts = set()
        for _ in range(6):
            status, metrics = await _get(f"{url}/metrics")
            assert status == 200
            counts.add(_healthz_count(metrics))
        assert counts == {40.0}

        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0
        assert not _alive(workers)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
