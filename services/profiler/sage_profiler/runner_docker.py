"""The Runner on a Docker engine: the docker SDK (blocking) in threads, measurement from cgroups.

Every container runs in a parent cgroup of its own (`<prefix>/<run>/c<k>`), so its totals survive
its exit; copies run side by side share `<prefix>/<run>`, where the shared ceiling is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import socket
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.tls import TLSConfig

from sage_common.procs import alive

from .cgroup import Cgroups, detect
from .gpu import GpuMonitor
from .runner import RunnerError, RunnerUnavailable, RunResult, RunSpec
from .sampler import Sampler

log = logging.getLogger(__name__)

LABEL = "org.sagecontinuum.profiler"
_MACHINES = {
    "x86_64": "linux/amd64",
    "amd64": "linux/amd64",
    "aarch64": "linux/arm64",
    "arm64": "linux/arm64",
    "armv7l": "linux/arm/v7",
}
API_VERSION = "1.41"  # Docker 20.10
_QEMU = {"qemu-aarch64": "linux/arm64", "qemu-arm": "linux/arm/v7", "qemu-x86_64": "linux/amd64"}


def registry_of(image: str) -> str:
    """The registry host of an image reference (`docker.io` when none is named)."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def tls_client(base_url: str, tls_dir: Path | None) -> docker.DockerClient:
    """A client of the engine at `base_url`; with `tls_dir`, over mutual TLS trusting the engine's
    CA alone: requests would otherwise take REQUESTS_CA_BUNDLE (and proxies) from the environment,
    so the API version is fixed (no request before `trust_env` is off) at Docker 20.10's, which
    every later engine serves."""
    if tls_dir is None:
        return docker.DockerClient(base_url=base_url, max_pool_size=64)
    files = {name: tls_dir / f"{name}.pem" for name in ("ca", "cert", "key")}
    missing = [str(f) for f in files.values() if not f.is_file()]
    if missing:
        raise RunnerUnavailable(f"the engine's TLS files are missing: {', '.join(missing)}")
    tls = TLSConfig(
        client_cert=(str(files["cert"]), str(files["key"])), ca_cert=str(files["ca"]), verify=True
    )
    client = docker.DockerClient(base_url=base_url, tls=tls, max_pool_size=64, version=API_VERSION)
    client.api.trust_env = False
    return client


class DockerRunner:
    """Runs containers under test on the local Docker engine (cgroupfs driver, v1 or v2)."""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        cgroup_root: Path = Path("/sys/fs/cgroup"),
        cgroup_prefix: str = "sage-profiler",
        sample_hz: float = 10.0,
        pull_policy: str = "if_missing",
        registry_auth: dict[str, str] | None = None,
        gpu: GpuMonitor | None = None,
        binfmt_dir: Path = Path("/proc/sys/fs/binfmt_misc"),
        registries: tuple[str, ...] = ("127.0.0.1:5000", "localhost:5000"),
        tls_dir: Path | None = None,
    ) -> None:
        try:
            self.client = (
                tls_client(base_url, tls_dir) if base_url else docker.from_env(max_pool_size=64)
            )
        except DockerException as exc:
            raise RunnerUnavailable(f"the Docker engine is unreachable: {exc}") from None
        driver = self.client.info().get("CgroupDriver", "cgroupfs")
        if driver != "cgroupfs":
            # With the systemd driver a cgroup parent must be a slice that systemd owns, and the
            # shared ceiling of side-by-side copies could not be written to it: not supported.
            raise RunnerError(
                f"the Docker engine uses the {driver} cgroup driver; the profiler needs cgroupfs "
                "(dockerd --exec-opt native.cgroupdriver=cgroupfs) or the Kubernetes runner"
            )
        self.cgroups: Cgroups = detect(cgroup_root)
        self.prefix = cgroup_prefix.strip("/")
        self.hz = sample_hz
        self.pull_policy = pull_policy
        self.registry_auth = registry_auth
        self.gpu = gpu
        self.binfmt_dir = binfmt_dir
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.registries = registries

    def close(self) -> None:
        self.client.close()

    def native_architectures(self) -> set[str]:
        arch = _MACHINES.get(platform.machine())
        return {arch} if arch else set()

    def emulated_architectures(self) -> set[str]:
        found = {arch for name, arch in _QEMU.items() if (self.binfmt_dir / name).exists()}
        return found - self.native_architectures()

    def has_gpu(self) -> bool:
        return self.gpu is not None

    async def prepare(self, image: str, platform: str | None) -> None:
        await asyncio.to_thread(self._prepare, image, platform)

    def _prepare(self, image: str, platform: str | None) -> None:
        if self.pull_policy != "always":
            try:
                self.client.images.get(image)
                return
            except ImageNotFound:
                if self.pull_policy == "never":
                    raise RunnerError(
                        f"image {image} is not on this engine (pull_policy=never)"
                    ) from None
        if registry_of(image) not in self.registries:
            raise RunnerError(
                f"image {image} is not on this engine, and pulls are allowed only "
                f"from {', '.join(self.registries) or 'no registry'}"
            )
        try:
            self.client.images.pull(image, platform=platform, auth_config=self.registry_auth)
        except APIError as exc:
            if exc.is_server_error() and "not found" not in str(exc).lower():
                raise RunnerUnavailable(f"cannot pull {image}: {exc}") from None
            raise RunnerError(f"cannot pull {image}: {exc.explanation}") from None
        except DockerException as exc:
            raise RunnerUnavailable(f"cannot pull {image}: {exc}") from None

    async def run(self, spec: RunSpec) -> RunResult:
        return (await self._run_many([spec]))[0]

    async def run_together(
        self, specs: list[RunSpec], *, memory_bytes: int, cpus: float
    ) -> list[RunResult]:
        # A child's CPU quota may not exceed its parent's (v1 refuses it): clamp to the group.
        clamped = [s.within(memory_bytes, cpus) for s in specs]
        return await self._run_many(clamped, memory_bytes=memory_bytes, cpus=cpus)

    async def _run_many(
        self, specs: list[RunSpec], *, memory_bytes: int | None = None, cpus: float | None = None
    ) -> list[RunResult]:
        """Run `specs` in one parent cgroup, under the shared ceiling when one is given."""
        run = f"{self.prefix}/{uuid.uuid4().hex[:16]}"
        made: list[tuple[Any, Sampler, float]] = []
        try:
            if memory_bytes is not None:
                await asyncio.to_thread(
                    self.cgroups.create, run, memory_bytes=memory_bytes, cpus=cpus
                )
            for k, spec in enumerate(specs):
                made.append(await asyncio.to_thread(self._create, spec, f"{run}/c{k}"))
            for container, sampler, _ in made:
                sampler.start()
                await asyncio.to_thread(container.start)
            waits = [
                asyncio.to_thread(self._finish, c, s, t, spec)
                for (c, s, t), spec in zip(made, specs, strict=True)
            ]
            return list(await asyncio.gather(*waits))
        except ImageNotFound as exc:
            raise RunnerError(f"cannot run {specs[0].image}: {exc.explanation}") from None
        except APIError as exc:
            if exc.is_client_error():
                raise RunnerError(f"the Docker engine refused the run: {exc.explanation}") from None
            raise RunnerUnavailable(f"the Docker engine failed: {exc}") from None
        except (DockerException, requests.exceptions.ConnectionError) as exc:
            raise RunnerUnavailable(f"the Docker engine is unreachable: {exc}") from None
        finally:
            for container, sampler, _ in made:
                sampler.stop()
                await asyncio.to_thread(self._remove, container)
            await asyncio.to_thread(self.cgroups.remove, run)

    def _create(self, spec: RunSpec, rel: str) -> tuple[Any, Sampler, float]:
        # The CPU ceiling sits on the run's own cgroup, not the container's: its throttling
        # counters then outlive the container and are read exactly, like the other totals.
        self.cgroups.create(rel, cpus=spec.cpus)
        all_gpus = docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])
        requested = time.time()
        container = self.client.containers.create(
            spec.image,
            command=spec.args or None,
            entrypoint=spec.command,
            environment=spec.env,
            platform=spec.platform,
            network_mode="none",
            read_only=True,
            tmpfs={"/tmp": f"rw,nosuid,nodev,size={spec.tmpfs_bytes}"},  # noqa: S108 - in the container
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            pids_limit=spec.pids_limit,
            mem_limit=spec.memory_bytes,
            memswap_limit=spec.memory_bytes,
            cgroup_parent="/" + rel,
            volumes={str(spec.data_dir): {"bind": spec.data_mount, "mode": "ro"}}
            if spec.data_dir is not None
            else {},
            labels={
                **spec.labels,
                LABEL: "1",
                f"{LABEL}.owner": self.owner,
                f"{LABEL}.cgroup": rel,
            },
            user=spec.user or None,  # None: the image's own
            device_requests=[all_gpus] if spec.gpu else None,
        )
        return container, Sampler(self.cgroups, rel, hz=self.hz, gpu=self.gpu), requested

    def _finish(
        self, container: Any, sampler: Sampler, requested: float, spec: RunSpec
    ) -> RunResult:
        timed_out = False
        try:
            container.wait(timeout=spec.timeout_seconds)
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            timed_out = True
            with contextlib.suppress(APIError):  # it ended just now
                container.kill()
            container.wait(timeout=60)
        sampler.stop()
        container.reload()
        state = container.attrs["State"]
        # RFC 3339 with nanoseconds, read to the microsecond: far finer than any run.
        started = datetime.fromisoformat(state["StartedAt"]).timestamp()
        finished = datetime.fromisoformat(state["FinishedAt"]).timestamp()
        totals = self.cgroups.totals(sampler.rel)
        exit_code = state.get("ExitCode")
        return RunResult(
            exit_code=None if timed_out else exit_code,
            oom_killed=bool(state.get("OOMKilled")) and exit_code == 137 and not timed_out,
            timed_out=timed_out,
            wall_seconds=max(0.0, finished - started),
            startup_seconds=max(0.0, started - requested),
            peak_memory_bytes=totals.peak_memory_bytes,
            cpu_seconds=totals.cpu_seconds,
            cpu_user_seconds=totals.cpu_user_seconds,
            cpu_system_seconds=totals.cpu_system_seconds,
            throttled_seconds=totals.throttled_seconds,
            nr_throttled=totals.nr_throttled,
            gpu_memory_bytes=sampler.gpu_peak_bytes,
            gpu_utilization=sampler.gpu_util_max,
            samples=sampler.samples,
            sample_interval=sampler.interval,
            log_tail=_tail(container),
        )

    def _remove(self, container: Any) -> None:
        try:
            container.remove(force=True)
        except NotFound:
            pass
        except APIError as exc:
            log.warning("could not remove container %s: %s", container.id[:12], exc)

    async def cleanup(self) -> int:
        return await asyncio.to_thread(self._cleanup)

    def _cleanup(self) -> int:
        """Remove containers (and cgroups) whose profiler on this host is gone (killed)."""
        host = socket.gethostname()
        removed = 0
        for container in self.client.containers.list(all=True, filters={"label": LABEL}):
            labels = container.labels
            owner_host, _, pid = labels.get(f"{LABEL}.owner", "").rpartition(":")
            if owner_host != host or not pid.isdigit() or alive(int(pid)):
                continue  # another host's, or a live profiler's on this host
            self._remove(container)
            rel = labels.get(f"{LABEL}.cgroup", "")
            if rel.startswith(self.prefix + "/"):
                self.cgroups.remove(rel.rsplit("/", 1)[0])
            removed += 1
        return removed


def _tail(container: Any, lines: int = 20) -> list[str]:
    try:
        raw = container.logs(tail=lines)
    except APIError:
        return []
    return [line[:500] for line in raw.decode("utf-8", "replace").splitlines()[-lines:]]
