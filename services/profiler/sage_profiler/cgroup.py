"""Read a container's resource use from its cgroup, on cgroup v1 and v2 alike.

Each run gets its own parent cgroup (Docker's `cgroup_parent`), with the container's cgroup inside.
The container's cgroup vanishes when it exits, but the parent's counters are hierarchical and stay:
peak memory and CPU time read from the parent after the exit are exact, not sampled.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

USER_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# Every v1 hierarchy the engine may make a run's cgroup in: `remove` clears each.
_V1_CONTROLLERS = (
    "memory cpu cpuacct pids blkio cpuset devices freezer perf_event net_cls net_prio hugetlb "
    "systemd rdma misc"
).split()


@dataclass(frozen=True)
class Totals:
    """What a cgroup used over its whole life."""

    peak_memory_bytes: int
    cpu_seconds: float
    cpu_user_seconds: float
    cpu_system_seconds: float
    throttled_seconds: float = 0.0
    nr_throttled: int = 0
    oom_kills: int = 0
    peak_exact: bool = True  # False when the kernel keeps no high-water mark (v2 before 5.19)


@dataclass(frozen=True)
class Reading:
    """One sample: memory in use now and CPU time so far."""

    memory_bytes: int
    cpu_seconds: float


def parse_flat_keyed(text: str) -> dict[str, int]:
    """`key value` lines (cpu.stat, memory.events, memory.stat, oom_control) as a dict."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key and value.strip().lstrip("-").isdigit():
            out[key] = int(value.strip())
    return out


def _keyed(path: Path) -> dict[str, int]:
    """A flat-keyed file the kernel may not have (empty then)."""
    return parse_flat_keyed(path.read_text()) if path.exists() else {}


def _read_int(path: Path) -> int:
    return int(path.read_text())


def _cpu_max(cpus: float, period_us: int = 100_000) -> tuple[int, int]:
    return max(1000, int(cpus * period_us)), period_us


@dataclass(frozen=True)
class CgroupV1:
    """Legacy hierarchy: one tree per controller (`memory/`, `cpu/`, `cpuacct/`, ...)."""

    root: Path
    version = 1

    def _dir(self, controller: str, rel: str) -> Path:
        return self.root / controller / rel.strip("/")

    def totals(self, rel: str) -> Totals:
        mem = self._dir("memory", rel)
        acct = self._dir("cpuacct", rel)
        usage = _read_int(acct / "cpuacct.usage") / 1e9
        if (acct / "cpuacct.usage_user").exists():
            user = _read_int(acct / "cpuacct.usage_user") / 1e9
            system = _read_int(acct / "cpuacct.usage_sys") / 1e9
        else:  # older kernels: ticks of USER_HZ only
            stat = parse_flat_keyed((acct / "cpuacct.stat").read_text())
            user, system = stat.get("user", 0) / USER_HZ, stat.get("system", 0) / USER_HZ
        # v1 splits user/system by sampling ticks; only the total is exact, so scale the split.
        if user + system > 0:
            user, system = usage * user / (user + system), usage * system / (user + system)
        throttle = _keyed(self._dir("cpu", rel) / "cpu.stat")  # by this cgroup's own quota
        oom = parse_flat_keyed((mem / "memory.oom_control").read_text())
        return Totals(
            peak_memory_bytes=_read_int(mem / "memory.max_usage_in_bytes"),
            cpu_seconds=usage,
            cpu_user_seconds=user,
            cpu_system_seconds=system,
            throttled_seconds=throttle.get("throttled_time", 0) / 1e9,
            nr_throttled=throttle.get("nr_throttled", 0),
            oom_kills=oom.get("oom_kill", 0),
        )

    def reading(self, rel: str) -> Reading:
        return Reading(
            memory_bytes=_read_int(self._dir("memory", rel) / "memory.usage_in_bytes"),
            cpu_seconds=_read_int(self._dir("cpuacct", rel) / "cpuacct.usage") / 1e9,
        )

    def procs(self, rel: str) -> list[int]:
        """Every process in the cgroup and its descendants (for matching GPU processes)."""
        return _procs_under(self._dir("memory", rel))

    def create(
        self, rel: str, *, memory_bytes: int | None = None, cpus: float | None = None
    ) -> None:
        """Make the cgroup in the controllers a container uses, with optional ceilings."""
        for controller in ("memory", "cpu", "cpuacct", "pids"):
            if (self.root / controller).is_dir():
                self._dir(controller, rel).mkdir(parents=True, exist_ok=True)
        if memory_bytes is not None:
            (self._dir("memory", rel) / "memory.limit_in_bytes").write_text(str(memory_bytes))
        if cpus is not None:
            quota, period = _cpu_max(cpus)
            cpu = self._dir("cpu", rel)
            (cpu / "cpu.cfs_period_us").write_text(str(period))
            (cpu / "cpu.cfs_quota_us").write_text(str(quota))

    def remove(self, rel: str) -> None:
        """Remove the cgroup (and empty children) from every controller; leftovers are ignored."""
        seen: set[Path] = set()
        for controller in _V1_CONTROLLERS:
            top = self._dir(controller, rel)
            real = top.resolve() if top.exists() else top
            if real in seen:  # cpu and cpuacct are often one mount under two names
                continue
            seen.add(real)
            _rmdir_tree(top)


@dataclass(frozen=True)
class CgroupV2:
    """Unified hierarchy: one tree; controllers enabled per level in `cgroup.subtree_control`."""

    root: Path
    version = 2

    def _dir(self, rel: str) -> Path:
        return self.root / rel.strip("/")

    def totals(self, rel: str) -> Totals:
        d = self._dir(rel)
        cpu = parse_flat_keyed((d / "cpu.stat").read_text())
        exact = (d / "memory.peak").exists()
        return Totals(
            peak_memory_bytes=_read_int(d / ("memory.peak" if exact else "memory.current")),
            cpu_seconds=cpu.get("usage_usec", 0) / 1e6,
            cpu_user_seconds=cpu.get("user_usec", 0) / 1e6,
            cpu_system_seconds=cpu.get("system_usec", 0) / 1e6,
            throttled_seconds=cpu.get("throttled_usec", 0) / 1e6,
            nr_throttled=cpu.get("nr_throttled", 0),
            oom_kills=_keyed(d / "memory.events").get("oom_kill", 0),
            peak_exact=exact,
        )

    def reading(self, rel: str) -> Reading:
        d = self._dir(rel)
        cpu = parse_flat_keyed((d / "cpu.stat").read_text())
        return Reading(
            memory_bytes=_read_int(d / "memory.current"), cpu_seconds=cpu.get("usage_usec", 0) / 1e6
        )

    def procs(self, rel: str) -> list[int]:
        return _procs_under(self._dir(rel))

    def create(
        self, rel: str, *, memory_bytes: int | None = None, cpus: float | None = None
    ) -> None:
        """Make the cgroup with memory, cpu and pids enabled on the path to it, and its ceilings."""
        parts = [p for p in rel.strip("/").split("/") if p]
        available = set((self.root / "cgroup.controllers").read_text().split())
        available &= {"memory", "cpu", "pids"}
        current = self.root
        for part in parts:
            _enable(current, available)
            current = current / part
            current.mkdir(exist_ok=True)
        _enable(current, available)  # the container's own cgroup, made later by runc, is below
        if memory_bytes is not None:
            (current / "memory.max").write_text(str(memory_bytes))
            if (current / "memory.swap.max").exists():
                (current / "memory.swap.max").write_text("0")
        if cpus is not None:
            quota, period = _cpu_max(cpus)
            (current / "cpu.max").write_text(f"{quota} {period}")

    def remove(self, rel: str) -> None:
        _rmdir_tree(self._dir(rel))


def _enable(directory: Path, controllers: set[str]) -> None:
    """Enable `controllers` for the children of `directory`, writing only what is missing: a
    profiler given a delegated subtree (not root) may not write the levels above it."""
    control = directory / "cgroup.subtree_control"
    current = set(control.read_text().split()) if control.exists() else set()
    missing = controllers - current
    if missing:
        control.write_text(" ".join(f"+{c}" for c in sorted(missing)))


Cgroups = CgroupV1 | CgroupV2


def detect(root: Path = Path("/sys/fs/cgroup")) -> Cgroups:
    """The hierarchy mounted at `root`: v2 when it is the unified tree, else v1."""
    if (root / "cgroup.controllers").exists():
        return CgroupV2(root)
    return CgroupV1(root)


def _procs_under(top: Path) -> list[int]:
    pids: list[int] = []
    for procs in top.rglob("cgroup.procs"):  # none when `top` is gone
        try:
            pids.extend(int(x) for x in procs.read_text().split())
        except (OSError, ValueError):
            continue
    return pids


def _rmdir_tree(top: Path) -> None:
    if not top.is_dir():
        return
    below = (p for p in top.rglob("*") if p.is_dir())
    for path in sorted([top, *below], key=lambda p: -len(p.parts)):  # the deepest first
        with contextlib.suppress(OSError):
            path.rmdir()
