"""Start a service from its `__main__`: JSON logging, then the aiohttp app on the configured port.

With `workers` > 1, this process becomes a supervisor of that many worker processes, each running
the whole app on the same port (`SO_REUSEPORT`: the kernel spreads connections over them), so a
service whose event loop fills one core can use several. Their Prometheus metrics are written to a
shared folder (prometheus-client's multiprocess mode) and `/metrics` on any worker answers the sum.
If a worker exits, the supervisor stops the others and exits with its status, for the orchestrator
to restart the whole; SIGTERM/SIGINT stop the workers gracefully.
"""

from __future__ import annotations

import ctypes
import logging
import math
import multiprocessing
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from aiohttp import web

from .config import InsecureConfig, ServiceConfig
from .logs import setup_logging
from .metrics import MULTIPROC_DIR

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1  # prctl(2)

CreateApp = Callable[[ServiceConfig], web.Application]


def available_cpus() -> int:
    """CPUs this process may use: its affinity, and a cgroup CPU quota (v2 or v1) if one is set."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpus = cpus or 1
    quota: float | None = None
    try:
        raw = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if raw and raw[0] != "max":
            quota = int(raw[0]) / int(raw[1])
    except (OSError, ValueError, IndexError):
        try:
            limit = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
            period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
            if limit > 0 and period > 0:
                quota = limit / period
        except (OSError, ValueError):
            pass
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return cpus


# Automatic worker count's ceiling: each worker holds its own database pool, and more workers
# than CPUs only share the same cores (4 on 2 CPUs measured no faster than 2).
MAX_AUTO_WORKERS = 4


def worker_count(workers: int, setting: str) -> tuple[int, str]:
    """How many worker processes to run for a `workers` setting (0: automatic) named `setting`,
    and why that many, for the start-up log."""
    if workers > 0:
        return workers, setting
    cpus = available_cpus()
    count = min(cpus, MAX_AUTO_WORKERS)
    return count, (
        f"one per CPU this process may use ({cpus}), at most {MAX_AUTO_WORKERS} ({setting}=0)"
    )


def _serve(
    name: str, config: ServiceConfig, create_app: CreateApp, *, reuse_port: bool = False
) -> None:
    try:
        app = create_app(config)
    except InsecureConfig as exc:
        logging.getLogger(__name__).critical("%s", exc)
        sys.exit(f"{name}: {exc}")
    web.run_app(
        app,
        host=config.host,
        port=config.port,
        access_log=None,
        print=None,
        reuse_port=reuse_port or None,
    )


def _worker(name: str, config: ServiceConfig, create_app: CreateApp, supervisor: int) -> None:
    """Serve as one worker, SIGTERMed when its supervisor dies, even by SIGKILL, so no orphan
    keeps serving the port that the restarted service binds (Linux's parent-death signal)."""
    setup_logging(name, config.log_level)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
        log.warning("workers will outlive a killed supervisor", extra={"errno": ctypes.get_errno()})
    if os.getppid() != supervisor:  # it died before the signal was asked for
        os.kill(os.getpid(), signal.SIGTERM)
    _serve(name, config, create_app, reuse_port=True)


def run_service(
    name: str,
    config: ServiceConfig,
    create_app: CreateApp,
    *,
    workers: int = 1,
    why: str = "",
) -> None:
    """Run the service in this process, or (`workers` > 1) in that many worker processes; `why`
    says in the start-up log line how the number was chosen."""
    setup_logging(name, config.log_level)
    log.info(
        "starting",
        extra={
            "host": config.host,
            "port": config.port,
            "schema": config.db_schema,
            "workers": workers,
            "workers_why": why,
        },
    )
    if workers <= 1:
        _serve(name, config, create_app)
        return
    sys.exit(_supervise(name, config, create_app, workers))


def _supervise(name: str, config: ServiceConfig, create_app: CreateApp, workers: int) -> int:
    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix=f"sage-{name}-metrics-") as metrics:
        # Read by prometheus-client when a worker imports it: set before the workers start.
        os.environ[MULTIPROC_DIR] = metrics
        procs = [
            spawn.Process(
                target=_worker, args=(name, config, create_app, os.getpid()), name=f"{name}-{i}"
            )
            for i in range(workers)
        ]
        stopping = False

        def stop(signum: int, _: FrameType | None) -> None:
            nonlocal stopping
            stopping = True
            for proc in procs:
                if proc.is_alive() and proc.pid is not None:
                    os.kill(proc.pid, signal.SIGTERM)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        for proc in procs:
            proc.start()
        status = 0
        while any(proc.is_alive() for proc in procs):
            ended = [p for p in procs if not p.is_alive()]
            if ended and not stopping:
                status = ended[0].exitcode or 1
                log.error(
                    "a worker exited; stopping the others",
                    extra={"worker": ended[0].name, "exitcode": ended[0].exitcode},
                )
                stop(signal.SIGTERM, None)
            time.sleep(0.2)
        for proc in procs:
            proc.join()
        if not status and not stopping:
            # Every worker ended between two looks (a refused start): report the first failure.
            status = next((p.exitcode for p in procs if p.exitcode), 0)
        return status
