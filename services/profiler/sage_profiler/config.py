"""Configuration of the profiler service, from `SAGE_PROFILER_*` environment variables.

Lists and objects (`SAGE_PROFILER_NODE_PROFILES`) are given as JSON.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from sage_common.appspec import MAX_TEST_REPETITIONS, MAX_TEST_TIMEOUT_SECONDS
from sage_common.config import ServiceConfig

from .runner import UNPRIVILEGED_USER

GiB = 1 << 30
MiB = 1 << 20


class NodeProfile(BaseModel):
    """A kind of edge node the scheduler places apps on; `reserved_*` is kept for the system."""

    name: str
    architecture: str  # linux/arm64
    memory_bytes: int
    cpus: float
    gpu: bool = False
    reserved_memory_bytes: int = 0
    reserved_cpus: float = 0.0


DEFAULT_NODES = [
    NodeProfile(
        name="jetson-class",
        architecture="linux/arm64",
        memory_bytes=8 * GiB,
        cpus=6,
        gpu=True,
        reserved_memory_bytes=1 * GiB,
        reserved_cpus=0.5,
    ),
    NodeProfile(
        name="raspberry-pi-class",
        architecture="linux/arm64",
        memory_bytes=4 * GiB,
        cpus=4,
        reserved_memory_bytes=512 * MiB,
        reserved_cpus=0.5,
    ),
]


class Config(ServiceConfig):
    model_config = SettingsConfigDict(env_prefix="SAGE_PROFILER_", extra="ignore")

    port: int = 8085
    db_schema: str = "profiler"
    queue: str = "profiler.build-done"  # this consumer's durable queue
    cancel_queue: str = "profiler.build-cancel"  # build.cancel's: stops a superseded build's run
    source: str = "sage/profiler"  # CloudEvents `source` of what it emits

    # Where containers run: the local Docker engine, or Kubernetes Jobs through the API server.
    runner: Literal["docker", "kubernetes"] = "docker"
    # Docker runner: the engine, and the cgroups each run is measured from.
    docker_url: str | None = None  # default: DOCKER_HOST or the local socket
    # An engine over TCP (tcp://host:2376) is reached only with mutual TLS: this directory holds
    # ca.pem (the engine's CA), cert.pem and key.pem (the profiler's client certificate).
    docker_tls_dir: Path | None = None
    cgroup_root: Path = Path("/sys/fs/cgroup")
    cgroup_prefix: str = "sage-profiler"
    sample_hz: float = 10.0
    pull_policy: Literal["always", "if_missing", "never"] = "if_missing"
    pull_registries: list[str] = ["127.0.0.1:5000", "localhost:5000"]  # never pull elsewhere
    registry_username: str = ""
    registry_password: SecretStr = SecretStr("")
    run_emulated: bool = True  # run foreign architectures under qemu (marked, not used for limits)
    gpu: Literal["auto", "off"] = "auto"

    # Kubernetes Jobs runner. In a pod it uses the service account's token, CA and namespace.
    k8s_api: str | None = None  # default in a pod: https://$KUBERNETES_SERVICE_HOST:$..._PORT
    k8s_token: SecretStr = SecretStr("")  # default: the service account token (re-read)
    k8s_ca_file: Path | None = None  # default: the service account's ca.crt
    k8s_namespace: str | None = None  # default: the profiler's own namespace
    k8s_architectures: list[str] = ["linux/amd64", "linux/arm64"]  # of the cluster's nodes
    k8s_node_selector: dict[str, str] = {}  # labels a profiling node must also have
    k8s_tolerations: list[dict[str, Any]] = []  # e.g. of a profiling-node taint
    k8s_image_pull_secret: str | None = None  # a dockerconfigjson Secret for the registry
    k8s_data_claim: str | None = None  # RWX claim mounted at work_dir: test data, read-only
    k8s_runtime_class: str | None = None  # e.g. gvisor, or nvidia on GPU nodes
    k8s_gpu: bool = False  # nodes offer nvidia.com/gpu
    k8s_pod_level_resources: bool = False  # copies side by side under a pod-level ceiling
    k8s_poll_seconds: float = 1.0  # pod status and Metrics API: the time series' rate
    k8s_start_timeout_seconds: float = 300.0  # scheduling and image pull, before a run starts
    k8s_ttl_seconds: int = 600  # finished Jobs a profiler could not delete are removed then

    # Ceilings of every container under test; an app's `hardware.min_memory` raises the memory
    # one for that app, up to `max_memory_limit_bytes`.
    memory_limit_bytes: int = 2 * GiB
    max_memory_limit_bytes: int = 8 * GiB  # the most `hardware.min_memory` raises it to
    cpu_limit: float = 2.0
    pids_limit: int = 256
    tmpfs_bytes: int = 64 * MiB
    # Every container under test runs as this numeric, non-root uid:gid, whatever the image's
    # USER says, unless the app's `testing.user` asks for another non-root uid, or for root.
    run_as_user: str = UNPRIVILEGED_USER
    # Whether `testing.user: root` is honoured; otherwise such a profile fails and says why.
    allow_root_tests: bool = False
    # The shared ceiling of copies run side by side: the node the profiler stands in for.
    concurrency_memory_bytes: int = 4 * GiB
    concurrency_cpus: float = 2.0

    # Seconds a run gets when `testing.timeout` is absent. The longest timeout (3600 s) is not a
    # setting: the ECR validates against it too (sage_common.schemas).
    default_timeout_seconds: Annotated[float, Field(gt=0, le=MAX_TEST_TIMEOUT_SECONDS)] = 300.0
    # Runs per architecture when `testing.repetitions` is absent. The most repetitions (10) and
    # copies (8) are not settings: the ECR validates against them too (sage_common.schemas).
    default_repetitions: Annotated[int, Field(ge=1, le=MAX_TEST_REPETITIONS)] = 3
    max_parallel_profiles: int = 1

    # Conclusions.
    memory_headroom: float = 0.25  # limit = peak * (1 + headroom)
    cpu_headroom: float = 0.25
    period_margin: float = 0.2  # a period must exceed (wall + start-up) * (1 + margin)
    node_profiles: list[NodeProfile] = DEFAULT_NODES

    # Test data, fetched from the object store's HTTP API and mounted read-only.
    storage_url: str = "http://127.0.0.1:8083"
    storage_token: SecretStr = SecretStr("")
    test_data_max_bytes: int = 2 * GiB
    work_dir: Path | None = None  # where test data is unpacked; default the system temp dir

    def unused_secrets(self) -> set[str]:
        # The Kubernetes API token: the Docker runner never uses it, and left empty the Jobs
        # runner reads the pod's service account token instead (a set one is still checked).
        if self.runner == "docker" or not self.k8s_token.get_secret_value():
            return {"k8s_token"}
        return set()

    @model_validator(mode="after")
    def _engine_over_tls(self) -> Config:
        if (self.docker_url or "").startswith(("tcp://", "http://", "https://")) and not (
            self.docker_tls_dir
        ):
            raise ValueError(
                "a Docker engine over TCP is reached only with TLS: set docker_tls_dir to the "
                "directory with ca.pem, cert.pem and key.pem"
            )
        return self

    @field_validator("run_as_user")
    @classmethod
    def _unprivileged(cls, value: str) -> str:
        uid, _, gid = value.partition(":")
        if not uid.isdigit() or not gid.isdigit() or int(uid) == 0:
            raise ValueError("a numeric, non-root uid:gid such as 65534:65534")
        return value


def in_cluster_api() -> str | None:
    """The API server's URL from the variables Kubernetes gives every pod (None outside one)."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    if not host:
        return None
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
