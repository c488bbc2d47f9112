"""Configuration of the builder service, from `SAGE_BUILDER_*` environment variables."""

from pathlib import Path
from typing import Literal

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from sage_common.config import ServiceConfig


class Config(ServiceConfig):
    model_config = SettingsConfigDict(env_prefix="SAGE_BUILDER_", extra="ignore")

    port: int = 8084
    db_schema: str = "builder"

    # Local state: checkouts (per build, removed after it) and the per-repository layer caches.
    work_dir: Path = Path("var/builder")
    # Total size of the layer caches; the least recently used repositories go first past it.
    cache_max_bytes: int = 10 * 1024**3

    # This service's durable queues (one per consumer, shared by the replicas).
    queue: str = "builder.app-submitted"
    cancel_queue: str = "builder.build-cancel"
    # The queue of `app.deleted` (images to delete); empty: `queue` with `.app-deleted` added.
    deletion_queue: str = ""
    # Waits before each retry of a deletion that failed (registry unreachable, a build still
    # running); after the last, the event goes to the queue's dead-letter queue.
    deletion_retry_seconds: list[float] = [5.0, 30.0, 120.0, 600.0]

    # Builds at once on this node, and how long one may take from fetch to pushed index.
    concurrency: int = 2
    build_timeout_seconds: float = 3600.0
    # How often a running build looks for a cancel recorded by another replica.
    cancel_poll_seconds: float = 1.0

    # Source fetch: https always; plain http/git only to these hosts (a test's loopback server).
    git_timeout_seconds: float = 300.0
    git_insecure_hosts: list[str] = []

    # buildah: storage driver, isolation of RUN steps and their limits. Every `buildah build` runs
    # in a sandbox of its own with no network (docs/adr/0010-build-sandbox.md); there is no
    # setting that turns it off.
    buildah: str = "buildah"
    # "auto": overlay where the kernel allows it (fast commits), else vfs (works anywhere).
    storage_driver: str = "auto"
    # "chroot" (what works in an unprivileged container) or "oci" (runc, where it can run).
    isolation: Literal["chroot", "oci"] = "chroot"
    build_memory: str = "4g"
    build_cpus: float = 2.0
    # Processes of a build at once (cgroup pids limit, and RUN steps' RLIMIT_NPROC).
    build_nproc: int = 4096
    # The largest file a RUN step may write, and the disk one platform's build may fill.
    build_max_file_bytes: int = 8 * 1024**3
    build_disk_bytes: int = 20 * 1024**3
    build_disk_poll_seconds: float = 2.0
    # Registries base images may come from besides our own (from which only public images can
    # be pulled); a Dockerfile naming another is refused before it builds.
    base_registries: list[str] = ["docker.io"]

    # Registry: where images go, and the service name its tokens are issued for.
    registry: str = "127.0.0.1:5000"
    registry_tls_verify: bool = False
    registry_service: str = "sage-registry"
    # Token endpoint (empty: `{auth_url}/auth/registry/token`), asked with client_id/secret.
    registry_token_url: str = ""
    push_attempts: int = 4
    push_backoff_seconds: float = 1.0

    # Build logs: the builder's own bucket, written while the build runs.
    s3_endpoint: str = "127.0.0.1:9000"
    s3_access_key: str = ""
    s3_secret_key: SecretStr = SecretStr("")
    s3_bucket: str = "sage-build-logs"
    s3_region: str = "us-east-1"
    s3_secure: bool = False
    log_flush_seconds: float = 1.0
    log_max_bytes: int = 16 * 1024**2
    log_tail_lines: int = 40
    # The app's ecr-meta folder (icon, science images, description), kept beside the logs:
    # most bytes per file and for the whole folder, most science images.
    meta_max_file_bytes: int = 5 * 1024**2
    meta_max_total_bytes: int = 20 * 1024**2
    meta_max_images: int = 8

    @property
    def app_deleted_queue(self) -> str:
        return self.deletion_queue or f"{self.queue}.app-deleted"

    @property
    def token_url(self) -> str:
        return self.registry_token_url or f"{self.auth_url.rstrip('/')}/auth/registry/token"
