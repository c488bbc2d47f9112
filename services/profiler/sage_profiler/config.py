"""Configuration of the profiler service, from `SAGE_PROFILER_*` environment variables.

Lists and objects (`SAGE_PROFILER_NODE_PROFILES`) are given as JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, SecretStr
from pydantic_settings import SettingsConfigDict
from sage_common.config import ServiceConfig

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
    source: str = "sage/profiler"  # CloudEvents `source` of what it emits

    # Where containers run and how they are measured.
    docker_url: str | None = None  # default: DOCKER_HOST or the local socket
    cgroup_root: Path = Path("/sys/fs/cgroup")
    cgroup_prefix: str = "sage-profiler"
    sample_hz: float = 10.0
    pull_policy: Literal["always", "if_missing", "never"] = "if_missing"
    pull_registries: list[str] = ["127.0.0.1:5000", "localhost:5000"]  # never pull elsewhere
    registry_username: str = ""
    registry_password: SecretStr = SecretStr("")
    run_emulated: bool = True  # run foreign architectures under qemu (marked, not used for limits)
    gpu: Literal["auto", "off"] = "auto"

    # Ceilings of every container under test.
    memory_limit_bytes: int = 2 * GiB
    cpu_limit: float = 2.0
    pids_limit: int = 256
    tmpfs_bytes: int = 64 * MiB
    run_as_user: str | None = None
    # The shared ceiling of copies run side by side: the node the profiler stands in for.
    concurrency_memory_bytes: int = 4 * GiB
    concurrency_cpus: float = 2.0

    # What a test description may ask for, and what it gets by default.
    default_timeout_seconds: float = 300.0
    max_timeout_seconds: float = 3600.0
    default_repetitions: int = 3
    max_repetitions: int = 10
    max_copies: int = 8
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
