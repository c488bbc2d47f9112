"""From measurements to what a scheduler needs: limits, node fit, concurrency, period, verdict.

Pure functions over run results; only native runs count for limits and periods, since emulation
(qemu) changes both time and memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .config import Config, MiB, NodeProfile
from .runner import RunResult


@dataclass
class ArchOutcome:
    """Everything run for one architecture of the image."""

    architecture: str
    emulated: bool
    image: str = ""
    runs: list[RunResult] = field(default_factory=list)
    together: list[RunResult] | None = None
    error: str | None = None


def run_failure(
    run: RunResult, expected_exit: int, memory_limit: int, timeout: float
) -> str | None:
    """Why one run failed, in words, or None when it passed."""
    if run.error:
        return run.error
    if run.timed_out:
        return f"timed out after {timeout:g} s and was killed"
    if run.oom_killed:
        return f"killed out of memory at the {memory_limit // MiB} MiB ceiling"
    if run.exit_code != expected_exit:
        return f"exited {run.exit_code}, expected {expected_exit}"
    return None


def peak_cores(run: RunResult, window_seconds: float = 1.0) -> float:
    """The highest CPU use over any `window_seconds` of the run (from the time series)."""
    values = [s.cpu_cores for s in run.samples[1:]]
    n = max(1, round(window_seconds / run.sample_interval))
    if len(values) < n:
        return run.cpu_cores
    best = max(sum(values[i : i + n]) / n for i in range(len(values) - n + 1))
    return max(best, run.cpu_cores)


def _round_up(value: float, step: float) -> float:
    return math.ceil(value / step - 1e-9) * step


def recommend(runs: list[RunResult], config: Config) -> dict[str, Any]:
    """Limits and requests from passing native runs: memory by peak, CPU by peak 1 s use.

    A run whose figures were not measured (`measured_by == "none"`) would pass zeros off as use."""
    unmeasured = sum(r.measured_by == "none" for r in runs)
    runs = [r for r in runs if r.measured_by != "none"]
    left_out = f"; {unmeasured} unmeasured run(s) left out" if unmeasured else ""
    if not runs:
        if unmeasured:
            return {"basis": f"no measured passing native run{left_out}: no limits derived"}
        return {"basis": "no passing native run: no limits derived"}
    peak = max(r.peak_memory_bytes for r in runs)
    cores = max(peak_cores(r) for r in runs)
    mean_cores = max(r.cpu_cores for r in runs)
    out: dict[str, Any] = {
        "memory_limit_bytes": int(_round_up(peak * (1 + config.memory_headroom), MiB)),
        "memory_request_bytes": int(_round_up(peak, MiB)),
        "cpu_limit": round(max(0.1, _round_up(cores * (1 + config.cpu_headroom), 0.1)), 2),
        "cpu_request": round(max(0.05, _round_up(mean_cores, 0.05)), 2),
        "basis": f"{len(runs)} passing native run(s){left_out}",
    }
    gpu = [r.gpu_memory_bytes for r in runs if r.gpu_memory_bytes]
    if gpu:
        out["gpu_memory_bytes"] = int(_round_up(max(gpu) * (1 + config.memory_headroom), MiB))
    return out


def node_fit(
    recommended: dict[str, Any], nodes: list[NodeProfile], architectures: list[str], gpu: bool
) -> dict[str, Any]:
    """How many copies fit on each node profile: memory by limit (it is not compressible), CPU by
    request; 0 where the architecture or a required GPU is missing."""
    out: dict[str, Any] = {}
    for node in nodes:
        entry: dict[str, Any] = {"architecture": node.architecture}
        if node.architecture not in architectures:
            entry |= {"copies": 0, "limited_by": "architecture"}
        elif gpu and not node.gpu:
            entry |= {"copies": 0, "limited_by": "gpu"}
        elif "memory_limit_bytes" not in recommended:
            entry |= {"copies": None, "limited_by": "unknown"}
        else:
            limit, request = recommended["memory_limit_bytes"], recommended["cpu_request"]
            by_mem = (node.memory_bytes - node.reserved_memory_bytes) // limit
            by_cpu = math.floor((node.cpus - node.reserved_cpus) / request + 1e-9)
            entry |= {
                "copies": int(max(0, min(by_mem, by_cpu))),
                "limited_by": "memory" if by_mem <= by_cpu else "cpu",
                "copies_by_memory": int(by_mem),
                "copies_by_cpu": int(by_cpu),
            }
        out[node.name] = entry
    return out


def concurrency(
    outcome: ArchOutcome | None, copies: int, expected_exit: int, config: Config, timeout: float
) -> dict[str, Any]:
    """Did every copy pass side by side, and how much slower than alone (mean wall ratio)?"""
    if outcome is None:
        return {"copies": copies, "tested": False, "reason": "nothing ran"}
    if outcome.together is None:
        return {
            "copies": copies,
            "tested": False,
            "reason": "the app declares one copy" if copies <= 1 else "not run",
        }
    solo = [r.wall_seconds for r in outcome.runs if not run_failure(r, expected_exit, 0, timeout)]
    failures = {
        i: why
        for i, r in enumerate(outcome.together)
        if (why := run_failure(r, expected_exit, config.concurrency_memory_bytes, timeout))
    }
    walls = [r.wall_seconds for r in outcome.together]
    solo_wall = sum(solo) / len(solo) if solo else None
    ok_walls = [w for i, w in enumerate(walls) if i not in failures]
    slowdown = (sum(ok_walls) / len(ok_walls) / solo_wall) if ok_walls and solo_wall else None
    return {
        "tested": True,
        "architecture": outcome.architecture,
        "emulated": outcome.emulated,
        "copies": copies,
        "passed": copies - len(failures),
        "all_passed": not failures,
        "failures": {str(i): why for i, why in failures.items()},
        "wall_seconds": [round(w, 3) for w in walls],
        "solo_wall_seconds": round(solo_wall, 3) if solo_wall else None,
        "slowdown": round(slowdown, 3) if slowdown else None,
        "peak_memory_bytes": [r.peak_memory_bytes for r in outcome.together],
        "ceiling": {
            "memory_bytes": config.concurrency_memory_bytes,
            "cpus": config.concurrency_cpus,
        },
    }


def period(
    runs: list[RunResult], declared: float | None, config: Config, *, emulated: bool
) -> dict[str, Any]:
    """The shortest period it can run at: slowest wall time plus start-up, with a margin."""
    if not runs:
        return {"declared_seconds": declared, "met": None, "reason": "no passing run to time"}
    wall = max(r.wall_seconds for r in runs)
    startup = max(r.startup_seconds for r in runs)
    shortest = (wall + startup) * (1 + config.period_margin)
    return {
        "shortest_seconds": round(shortest, 3),
        "shortest_minutes": max(1, math.ceil(shortest / 60 - 1e-9)),
        "wall_seconds": round(wall, 3),
        "startup_seconds": round(startup, 3),
        "declared_seconds": declared,
        "met": None if declared is None else declared >= shortest,
        "emulated": emulated,
    }
