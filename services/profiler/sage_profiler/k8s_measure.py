"""Reading a profile Job's measurements: container states from the pod, use from the Metrics API.

Exit code, OOM kill and the start and finish times are the kubelet's (`state.terminated`, whole
seconds). Peak memory and CPU are what `metrics.k8s.io` sampled (working-set memory, and the CPU
rate over the metrics-server's window, typically 15 s), not the cgroup's exact totals: such results
carry `measured_by = "metrics-api"` (`"none"` when no sample came), and docs/profiler.md says what
that means for the conclusions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .k8s_api import api_time, quantity
from .runner import RunnerError, RunResult, RunSpec, Sample

# Waiting reasons after which a container will not start by itself.
_CANNOT_START = {
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
}


@dataclass
class KubeRunResult(RunResult):
    """A run's result with where its memory and CPU figures came from."""

    measured_by: str = "metrics-api"


@dataclass
class Track:
    """What the runner has seen of one container so far."""

    spec: RunSpec
    name: str
    seen_running: float | None = None  # monotonic, first poll that saw it running
    started_at: float | None = None  # the kubelet's startedAt (Unix time)
    terminated: dict[str, Any] | None = None
    timed_out_after: float | None = None  # seconds it ran before the runner stopped it
    samples: list[Sample] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.terminated is not None or self.timed_out_after is not None


def observe(pod: dict[str, Any], tracks: list[Track], now: float) -> None:
    """Update each container's track from the pod's container statuses."""
    statuses = {s["name"]: s for s in (pod.get("status") or {}).get("containerStatuses") or []}
    for t in tracks:
        state = (statuses.get(t.name) or {}).get("state") or {}
        if "waiting" in state:
            reason = state["waiting"].get("reason", "")
            if reason in _CANNOT_START:
                message = state["waiting"].get("message", "")
                raise RunnerError(f"cannot start {t.spec.image}: {reason}: {message}"[:1000])
        for key in ("running", "terminated"):
            if key in state and t.seen_running is None:
                t.seen_running = now
                t.started_at = api_time(state[key].get("startedAt"))
        if "terminated" in state and t.timed_out_after is None:
            t.terminated = state["terminated"]


def add_samples(metrics: dict[str, Any], tracks: list[Track], now: float) -> None:
    """One PodMetrics reading into the series of each container that is running."""
    usage = {c["name"]: c.get("usage", {}) for c in metrics.get("containers", [])}
    for t in tracks:
        if t.name in usage and t.seen_running is not None and not t.done:
            t.samples.append(
                Sample(
                    t=round(now - t.seen_running, 3),
                    memory_bytes=int(quantity(usage[t.name].get("memory", "0"))),
                    cpu_cores=round(quantity(usage[t.name].get("cpu", "0")), 3),
                )
            )


def check_pod_ended(pod: dict[str, Any], tracks: list[Track]) -> None:
    """A pod that ended while a container never finished was evicted or lost its node."""
    status = pod.get("status") or {}
    if status.get("phase") in ("Failed", "Succeeded") and not all(t.done for t in tracks):
        why = f"{status.get('reason', '')}: {status.get('message', '')}".strip(": ")
        raise RunnerError(f"the run's pod ended before its containers did ({why or 'no reason'})")


def deadline_exceeded(job: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Failed"
        and c.get("status") == "True"
        and c.get("reason") == "DeadlineExceeded"
        for c in (job.get("status") or {}).get("conditions") or []
    )


def result_of(t: Track, requested: float, poll: float, logs: list[str]) -> KubeRunResult:
    peak = max((s.memory_bytes for s in t.samples), default=0)
    mean_cores = sum(s.cpu_cores for s in t.samples) / len(t.samples) if t.samples else 0.0
    startup = max(0.0, t.started_at - requested) if t.started_at is not None else 0.0
    if t.timed_out_after is not None or t.terminated is None:
        exit_code, oom, timed_out = None, False, True
        wall = t.timed_out_after or 0.0
    else:
        exit_code = t.terminated.get("exitCode")
        oom = t.terminated.get("reason") == "OOMKilled"
        timed_out = False
        began = api_time(t.terminated.get("startedAt"))
        ended = api_time(t.terminated.get("finishedAt"))
        wall = max(0.0, ended - began) if began is not None and ended is not None else 0.0
    return KubeRunResult(
        exit_code=exit_code,
        oom_killed=oom,
        timed_out=timed_out,
        wall_seconds=wall,
        startup_seconds=startup,
        peak_memory_bytes=peak,
        cpu_seconds=round(mean_cores * wall, 3),  # an estimate from sampled rates
        cpu_user_seconds=0.0,  # the Metrics API does not split user and system time
        cpu_system_seconds=0.0,
        samples=t.samples,
        sample_interval=poll,
        log_tail=logs,
        measured_by="metrics-api" if t.samples else "none",
    )
