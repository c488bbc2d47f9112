"""The Runner on Kubernetes: one Job per run through the API server, followed to its end.

`k8s_job` writes the Job and `k8s_measure` reads what it did; this module drives the API, and
stops a run at its timeout.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from typing import Any
from urllib.parse import quote

from .config import Config, in_cluster_api
from .k8s_api import SERVICE_ACCOUNT, KubeApi
from .k8s_job import OWNER_LABEL, RUN_LABEL, JobSettings, job_manifest
from .k8s_measure import Track, add_samples, check_pod_ended, deadline_exceeded, observe, result_of
from .runner import RunnerError, RunResult, RunSpec
from .runner_docker import registry_of

log = logging.getLogger(__name__)

LOG_LINES = 20


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
        chosen = spec.platform or spec.architecture
        if chosen:
            return chosen
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
            tracks = [Track(spec, f"c{k}") for k, spec in enumerate(specs)]
            pod = await self._follow(name, tracks, platform)
            logs = [await self._log_tail(pod, t.name) if pod else [] for t in tracks]
            return [
                result_of(t, requested, self.poll, tail)
                for t, tail in zip(tracks, logs, strict=True)
            ]
        finally:
            await self._delete(name)

    async def _follow(self, name: str, tracks: list[Track], platform: str) -> str | None:
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
                observe(pod, tracks, now)
                check_pod_ended(pod, tracks)
            expired = deadline_exceeded(job)  # stops every container not done yet
            for t in tracks:
                ran = now - t.seen_running if t.seen_running is not None else None
                if not t.done and (expired or (ran is not None and ran >= t.spec.timeout_seconds)):
                    t.timed_out_after = ran or 0.0
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

    async def _sample(
        self, pod: str, tracks: list[Track], last: str | None, now: float
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
        add_samples(metrics, tracks, now)
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
