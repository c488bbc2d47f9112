"""Configuration of the ECR API, from `SAGE_ECR_*` environment variables."""

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from sage_common.config import ServiceConfig
from sage_common.runner import worker_count


class Config(ServiceConfig):
    model_config = SettingsConfigDict(env_prefix="SAGE_ECR_", extra="ignore")

    port: int = 8082
    # Processes serving the port together (SO_REUSEPORT), each a whole replica: its own event loop,
    # database pool, listing cache (emptied on every change through Postgres NOTIFY), outbox relay
    # and consumer. One loop fills one core on uncached listings (`make bench BENCH_ARGS=ecr`).
    # 0: one per CPU this process may use (affinity, cgroup quota), at most 4.
    workers: int = Field(0, ge=0, le=64)
    db_schema: str = "ecr"
    # App descriptions are small; anything bigger is refused with 413 before it is parsed.
    max_body_bytes: int = 256 * 1024
    # YAML limits: nesting depth, and nodes after alias expansion (a "billion laughs" guard).
    spec_max_depth: int = 32
    spec_max_nodes: int = 20_000
    # The API's address as browsers reach it (https://ecr.example.org), for the links in answers
    # (a build's `url`); empty: the request's own (the gateway's X-Forwarded-Proto/-Host, or Host).
    public_url: str = ""
    # Members of this group (and admins) review apps; they may read every app.
    reviewers_group: str = "reviewers"
    # Whether a reviewer (or admin) may approve or reject an app they submitted themselves.
    allow_self_review: bool = False
    # The one account allowed to push images to the registry.
    builder_account: str = "service:builder"
    # Service accounts (client ids) that may ask `GET /api/registry/access`.
    registry_access_clients: list[str] = ["auth"]
    # Listing pages kept per process (emptied on every catalogue change); 0 turns caching off.
    listing_cache_entries: int = 1024
    # The consumer's queue name; tests set a unique one.
    consumer_queue: str = "ecr-api.pipeline"
    # Whether to start the pipeline consumer and the outbox relay (off for HTTP-only tests).
    use_bus: bool = True
    # The builder's log bucket, read to serve live build logs (the builder writes, this reads).
    s3_endpoint: str = "127.0.0.1:9000"
    s3_access_key: str = ""
    s3_secret_key: SecretStr = SecretStr("")
    s3_region: str = "us-east-1"
    s3_secure: bool = False
    s3_timeout: float = 5.0
    build_log_bucket: str = "sage-build-logs"
    # Most bytes of a log sent in one text answer; a reader asks again from the new offset.
    build_log_chunk_bytes: int = 1024 * 1024

    def worker_count(self) -> tuple[int, str]:
        """How many worker processes to run, and why that many (for the start-up log)."""
        return worker_count(self.workers, "SAGE_ECR_WORKERS")
