"""`python -m sage_storage` and `sage_ecr` with several worker processes on one port (SO_REUSEPORT).

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

from tests.fixtures.s3 import S3Server
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


def _workers(pid: int) -> list[int]:
    """The worker processes of the supervisor `pid` (not multiprocessing's resource tracker)."""
    children = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return [c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def _start(env: dict[str, str], log: Path, module: str = "sage_storage") -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module], env=env, stdout=out, stderr=out, cwd=ROOT
        )


def _text(log: Path) -> str:
    return log.read_text()


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
        await _until_ready(proc, url, log)
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


async def _until_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, _text(log)
        try:
            if (await _get(f"{url}/readyz"))[0] == 200:
                return
        except aiohttp.ClientError:
            pass
        assert time.monotonic() < deadline, _text(log)
        await asyncio.sleep(0.2)


async def test_the_ecr_runs_as_workers_that_die_with_a_supervisor_killed_by_sigkill(
    database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "SAGE_ECR_WORKERS": "2",
        "SAGE_ECR_PORT": str(port),
        "SAGE_ECR_DATABASE_URL": database_url,
        "SAGE_ECR_DB_SCHEMA": "ecr_workers",
        "SAGE_ECR_USE_BUS": "false",
    }
    log = tmp_path / "ecr.log"
    proc = _start(env, log, "sage_ecr")
    url = f"http://127.0.0.1:{port}"
    workers: list[int] = []
    try:
        await _until_ready(proc, url, log)
        workers = _workers(proc.pid)
        assert len(workers) == 2
        assert re.search(r'"workers": 2, "workers_why": "SAGE_ECR_WORKERS"', _text(log))
        proc.kill()  # the supervisor alone, as the OOM killer would pick it
        proc.wait()
        for _ in range(300):
            if not _alive(workers):
                break
            await asyncio.sleep(0.1)
        assert not _alive(workers), "workers outlived their supervisor, holding its port"
        try:
            status: int | None = (await _get(f"{url}/healthz"))[0]
        except aiohttp.ClientError:
            status = None
        assert status is None, "the port still answers"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in _alive(workers):
            os.kill(pid, signal.SIGKILL)
