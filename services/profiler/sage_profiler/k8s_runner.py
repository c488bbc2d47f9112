"""The Runner on Kubernetes: one Job per run through the API server, measured from the pod's status
and the Metrics API.

Exit code, OOM kill and the start and finish times are the kubelet's (`state.terminated`, whole
seconds); peak memory and CPU are what `metrics.k8s.io` sampled (working-set memory and CPU rate
over the metrics-server's window, typically 15 s), not the cgroup's exact totals: such results
carry `measured_by = "metrics-api"` (or `"none"` when no sample came), and docs/profiler.md says
what that means for the conclusions.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from .config import Config, in_cluster_api
from .docker_runner import registry_of
from .k8s_api import SERVICE_ACCOUNT, KubeApi, api_time, quantity
from .k8s_job import OWNER_LABEL, RUN_LABEL, JobSettings, job_manifest
from .runner import RunnerError, RunResult, RunSpec, Sample

log = logging.getLogger(__name__)

# Waiting reasons after which a container will not start by itself.
_CANNOT_START = {
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
}
LOG_LINES = 20


@dataclass
class KubeRunResult(RunResult):
    """A run's result with where its memory and CPU figures came from."""

    measured_by: str = "metrics-api"


@dataclass
class _Track:
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


class KubernetesRunner:
    """Runs containers under test as Kubernetes Jobs on nodes of their architecture."""

    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        settings: JobSettings,
        *,
        architectures: set[str],
        gpu: bool = False,
        poll_seconds: float = 1.0,
        registries: tuple[str, ...] = (),
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.settings = settings
        self.architectures = architectures
        self.gpu = gpu
        self.poll = poll_seconds
        self.registries = registries
        self._jobs = f"/apis/batch/v1/namespaces/{quote(namespace)}/jobs"
        self._pods = f"/api/v1/namespaces/{quote(namespace)}/pods"

    @classmethod
    def from_config(cls, config: Config) -> KubernetesRunner:
        """In a pod: the service account; elsewhere `k8s_api` and `k8s_token` must be set."""
        url = config.k8s_api or in_cluster_api()
        if not url:
            raise RunnerError(
                "SAGE_PROFILER_RUNNER=kubernetes outside a pod: set SAGE_PROFILER_K8S_API"
            )
        token = config.k8s_token.get_secret_value()
        account = SERVICE_ACCOUNT if not token and (SERVICE_ACCOUNT / "token").exists() else None
        ca = config.k8s_ca_file or (account / "ca.crt" if account else None)
        namespace = config.k8s_namespace
        if namespace is None and account is not None:
            namespace = (account / "namespace").read_text().strip()
        api = KubeApi(
            url, token=token, token_file=account / "token" if account else None, ca_file=ca
        )
        settings = JobSettings(
            owner=socket.gethostname()[:63],
            node_selector=config.k8s_node_selector,
            tolerations=config.k8s_tolerations,
            image_pull_secret=config.k8s_image_pull_secret,
            data_claim=config.k8s_data_claim,
            work_dir=config.work_dir,
            runtime_class=config.k8s_runtime_class,
            pod_level_resources=config.k8s_pod_level_resources,
            start_timeout_seconds=config.k8s_start_timeout_seconds,
            ttl_seconds=config.k8s_ttl_seconds,
        )
        return cls(
            api,
            namespace or "default",
            settings,
            architectures=set(config.k8s_architectures),
            gpu=config.k8s_gpu,
            poll_seconds=config.k8s_poll_seconds,
            registries=tuple(config.pull_registries),
        )

    async def close(self) -> None:
        await self.api.close()

    async def ping(self) -> None:
        """Readiness: the API server answers and lets this account list Jobs."""
        await self.api.request("GET", self._jobs, params={"limit": "1"})

    def native_architectures(self) -> set[str]:
        return set(self.architectures)

    def emulated_architectures(self) -> set[str]:
        return set()  # each architecture runs on its own nodes, never under emulation

    def has_gpu(self) -> bool:
        return self.gpu

    async def prepare(self, image: str, platform: str | None) -> None:
        """Nodes pull the image themselves; here only the registry is checked."""
        if self.registries and registry_of(image) not in self.registries:
            raise RunnerError(
                f"image {image} is not from {', '.join(self.registries)}, the only "
                "registries profile runs may pull from"
            )

    async def run(self, spec: RunSpec) -> RunResult:
        return (await self._run_job([spec], None))[0]

    async def run_together(
        self, specs: list[RunSpec], *, memory_bytes: int, cpus: float
    ) -> list[RunResult]:
        return await self._run_job(specs, (memory_bytes, cpus))

    def _platform(self, spec: RunSpec) -> str:
        if spec.platform:
            return spec.platform
        if len(self.architectures) == 1:
            return next(iter(self.architectures))
        raise RunnerError(
            f"the run names no architecture, and profile runs go to nodes of "
            f"{', '.join(sorted(self.architectures))}: cannot choose the nodes"
        )

    async def _run_job(
        self, specs: list[RunSpec], shared: tuple[int, float] | None
    ) -> list[RunResult]:
        platform = self._platform(specs[0])
        if platform not in self.architectures:
            raise RunnerError(f"this cluster has no {platform} nodes for profile runs")
        name = f"profile-{uuid.uuid4().hex[:12]}"
        body = job_manifest(name, specs, platform, self.settings, shared=shared)
        requested = time.time()
        await self.api.request("POST", self._jobs, body=body)
        try:
            tracks = [_Track(spec, f"c{k}") for k, spec in enumerate(specs)]
            pod = await self._follow(name, tracks, platform)
            logs = [await self._log_tail(pod, t.name) for t in tracks] if pod else []
            return [
                _result(t, requested, self.poll, logs[k] if logs else [])
                for k, t in enumerate(tracks)
            ]
        finally:
            await self._delete(name)

    async def _follow(self, name: str, tracks: list[_Track], platform: str) -> str | None:
        """Poll the Job and its pod until every container ended or was stopped; the pod's name."""
        start_by = time.monotonic() + self.settings.start_timeout_seconds
        pod_name: str | None = None
        last_window: str | None = None
        while True:
            job = await self.api.request("GET", f"{self._jobs}/{name}") or {}
            pods = await self.api.request(
                "GET", self._pods, params={"labelSelector": f"job-name={name}"}
            )
            items = sorted(
                (pods or {}).get("items", []),
                key=lambda p: p.get("metadata", {}).get("creationTimestamp") or "",
            )
            pod = items[-1] if items else None
            now = time.monotonic()
            if pod is not None:
                pod_name = pod["metadata"]["name"]
                self._observe(pod, tracks, now)
            if pod is not None and not all(t.done for t in tracks):
                _check_pod_ended(pod, tracks)
            if _deadline_exceeded(job):
                for t in tracks:
                    if not t.done:
                        ran = now - t.seen_running if t.seen_running is not None else 0.0
                        t.timed_out_after = ran
            for t in tracks:
                if not t.done and t.seen_running is not None:
                    if now - t.seen_running >= t.spec.timeout_seconds:
                        t.timed_out_after = now - t.seen_running
            if all(t.done for t in tracks):
                return pod_name
            if any(t.seen_running is None for t in tracks) and now > start_by:
                raise RunnerError(
                    f"the run did not start within {self.settings.start_timeout_seconds:g} s "
                    f"on a {platform} node: {await self._why(name, pod)}"
                )
            if pod_name is not None and any(t.seen_running is not None for t in tracks):
                last_window = await self._sample(pod_name, tracks, last_window, now)
            await asyncio.sleep(self.poll)

    def _observe(self, pod: dict[str, Any], tracks: list[_Track], now: float) -> None:
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

    async def _sample(
        self, pod: str, tracks: list[_Track], last: str | None, now: float
    ) -> str | None:
        """One Metrics API reading per new metrics window, into each running container's series."""
        path = f"/apis/metrics.k8s.io/v1beta1/namespaces/{quote(self.namespace)}/pods/{pod}"
        try:
            metrics = await self.api.request("GET", path, missing_ok=True)
        except RunnerError as exc:  # no metrics-server, or no right to read it: no series
            log.debug("no pod metrics for %s: %s", pod, exc)
            return last
        if not metrics or metrics.get("timestamp") == last:
            return last
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
        return str(metrics.get("timestamp"))

    async def _why(self, job: str, pod: dict[str, Any] | None) -> str:
        """The scheduler's or kubelet's last word on a run that does not start."""
        names = [job] + ([pod["metadata"]["name"]] if pod else [])
        messages: list[str] = []
        for name in names:
            events = await self.api.request(
                "GET",
                f"/api/v1/namespaces/{quote(self.namespace)}/events",
                params={"fieldSelector": f"involvedObject.name={name}"},
            )
            messages += [
                f"{e.get('reason')}: {e.get('message')}"
                for e in (events or {}).get("items", [])
                if e.get("type") == "Warning"
            ]
        return messages[-1] if messages else "no pod was scheduled (no event says why)"

    async def _log_tail(self, pod: str, container: str) -> list[str]:
        try:
            text = await self.api.text(
                f"{self._pods}/{pod}/log",
                {"container": container, "tailLines": str(LOG_LINES)},
                missing_ok=True,
            )
        except RunnerError:
            return []
        return [line[:500] for line in (text or "").splitlines()[-LOG_LINES:]]

    async def _delete(self, name: str) -> None:
        """Delete the Job and (in the background) its pod; a Job already gone is fine."""
        try:
            await self.api.request(
                "DELETE",
                f"{self._jobs}/{name}",
                params={"propagationPolicy": "Background"},
                missing_ok=True,
            )
        except RunnerError as exc:  # its TTL removes it later
            log.warning("could not delete Job %s: %s", name, exc)

    async def cleanup(self) -> int:
        """Delete Jobs left by this pod's earlier process or by profiler pods that are gone."""
        jobs = await self.api.request(
            "GET", self._jobs, params={"labelSelector": f"{RUN_LABEL}=true,{OWNER_LABEL}"}
        )
        removed = 0
        alive: dict[str, bool] = {}
        for job in (jobs or {}).get("items", []):
            owner = job["metadata"].get("labels", {}).get(OWNER_LABEL, "")
            if owner != self.settings.owner:
                if owner not in alive:
                    found = await self.api.request(
                        "GET", f"{self._pods}/{quote(owner)}", missing_ok=True
                    )
                    alive[owner] = found is not None
                if alive[owner]:
                    continue  # a live profiler's run
            await self._delete(job["metadata"]["name"])
            removed += 1
        return removed


def _check_pod_ended(pod: dict[str, Any], tracks: list[_Track]) -> None:
    """A pod that ended while a container never finished was evicted or lost its node."""
    status = pod.get("status") or {}
    if status.get("phase") in ("Failed", "Succeeded") and any(
        t.terminated is None and t.timed_out_after is None for t in tracks
    ):
        why = f"{status.get('reason', '')}: {status.get('message', '')}".strip(": ")
        raise RunnerError(f"the run's pod ended before its containers did ({why or 'no reason'})")


def _deadline_exceeded(job: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Failed"
        and c.get("status") == "True"
        and c.get("reason") == "DeadlineExceeded"
        for c in (job.get("status") or {}).get("conditions") or []
    )


def _result(t: _Track, requested: float, poll: float, logs: list[str]) -> KubeRunResult:
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
