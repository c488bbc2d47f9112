"""Configuration of the storage service, from `SAGE_STORAGE_*` environment variables."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from sage_common.config import ServiceConfig
from sage_common.runner import worker_count

MiB = 1024 * 1024
GiB = 1024 * MiB
S3_MAX_PARTS = 10_000


class Config(ServiceConfig):
    model_config = SettingsConfigDict(env_prefix="SAGE_STORAGE_", extra="ignore")

    port: int = 8083
    # Processes serving the port together (SO_REUSEPORT), each with its own event loop and database
    # pool (up to db_pool_max connections each): the loop's one core limits many small uploads.
    # 0: one per CPU this process may use (affinity, cgroup quota), at most 4: more workers than
    # CPUs only share the same cores (4 on 2 CPUs measured no faster than 2).
    workers: int = Field(0, ge=0, le=64)
    db_schema: str = "storage"
    client_id: str = "storage"

    # The S3 server behind the store: MinIO in production, `rclone serve s3` in development.
    s3_endpoint: str = "127.0.0.1:9000"
    s3_access_key: str = ""
    s3_secret_key: SecretStr = SecretStr("")
    s3_secure: bool = False
    # A fixed region: without one the client asks for the bucket's location, which rclone lacks.
    s3_region: str = "us-east-1"
    # One S3 bucket holds every SAGE bucket (docs/adr/0004-object-store-layout.md).
    s3_bucket: str = "sage-storage"
    # Threads that run the (synchronous) minio client; also the size of its connection pool.
    s3_workers: int = 16
    # Kept-alive connections (per worker) for small bodies' single PUTs, sent from the event loop
    # without threads.
    s3_connections: int = Field(64, ge=1)
    s3_connect_timeout: float = 5.0
    s3_read_timeout: float = 120.0

    # Uploads: bodies stream to S3 in parts of this size (S3's minimum is 5 MiB).
    part_size: int = Field(8 * MiB, ge=5 * MiB)
    # Parts of one upload sent to S3 at once while the next is read: memory is about
    # (parts_in_flight + 1) * part_size per large upload.
    parts_in_flight: int = Field(3, ge=1, le=16)
    max_upload_bytes: int = 50 * GiB
    # Per-user quotas, counted on the buckets a user owns; 0 means no limit.
    quota_bytes: int = 0
    quota_buckets: int = 1000

    # Background clean-up of interrupted deletes and abandoned uploads.
    sweep_interval_seconds: float = 60.0
    stale_upload_seconds: float = 24 * 3600.0
    # Replaced and deleted objects' blobs stay this long, so downloads already under way finish;
    # 0 deletes them at once.
    garbage_grace_seconds: float = 300.0
    # After a failed upload, how long to keep reading (and dropping) the rest of the body so the
    # client sees the error answer instead of a reset connection.
    drain_seconds: float = 10.0

    @model_validator(mode="after")
    def _fits_in_parts(self) -> Config:
        if self.max_upload_bytes > self.part_size * S3_MAX_PARTS:
            raise ValueError("max_upload_bytes needs more than S3's 10,000 parts of part_size")
        return self

    def worker_count(self) -> tuple[int, str]:
        """How many worker processes to run, and why that many (for the start-up log)."""
        return worker_count(self.workers, "SAGE_STORAGE_WORKERS")

    def unused_secrets(self) -> set[str]:
        # Storage publishes and consumes no events: it holds no broker account.
        return {"amqp_url"}
