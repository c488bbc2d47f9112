"""The builder service's aiohttp application: health and metrics, the builder, its consumers."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web
from minio import Minio

from sage_common.web import CONFIG, POOL, READY_CHECKS, bus_context, create_service_app, watch
from sage_common.work import Jobs

from .buildah import BuildahBackend
from .buildlog import S3LogSink
from .cache import LayerCache
from .config import Config
from .events import consumers
from .metafiles import MetaLimits
from .registry import Credentials, RegistryClient
from .registry_images import ImageRemover
from .routes import routes
from .service import Builder
from .service_builds import Builds
from .service_images import ImageDeletions
from .source import GitFetcher
from .state import BUILDER, BUILDS, DELETIONS, JOBS
from .store import Store

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def make_builder(config: Config) -> Builder:
    """A Builder wired from configuration (also what the benchmark drives directly)."""
    # The builder's service account, which the auth service turns into registry tokens.
    secret = config.client_secret.get_secret_value()
    creds = Credentials(config.client_id, secret) if config.client_id and secret else None
    s3 = Minio(
        config.s3_endpoint,
        config.s3_access_key,
        config.s3_secret_key.get_secret_value(),
        secure=config.s3_secure,
        region=config.s3_region,
    )
    backend = BuildahBackend(
        buildah=config.buildah,
        storage_driver=config.storage_driver,
        isolation=config.isolation,
        memory=config.build_memory,
        cpus=config.build_cpus,
        nproc=config.build_nproc,
        max_file_bytes=config.build_max_file_bytes,
        disk_bytes=config.build_disk_bytes,
        disk_poll_seconds=config.build_disk_poll_seconds,
        tls_verify=config.registry_tls_verify,
    )
    work = config.work_dir.resolve()
    return Builder(
        backend=backend,
        fetcher=GitFetcher(config.git_insecure_hosts, config.git_timeout_seconds),
        cache=LayerCache(work / "cache", config.cache_max_bytes, on_idle=backend.tidy),
        sink=S3LogSink(s3, config.s3_bucket),
        registry=config.registry,
        registry_client=RegistryClient(
            config.registry,
            token_url=config.token_url,
            service=config.registry_service,
            creds=creds,
            tls=config.registry_tls_verify,
        ),
        creds=creds,
        work_dir=work,
        timeout=config.build_timeout_seconds,
        push_attempts=config.push_attempts,
        push_backoff=config.push_backoff_seconds,
        log_options={
            "flush_seconds": config.log_flush_seconds,
            "max_bytes": config.log_max_bytes,
            "tail_lines": config.log_tail_lines,
        },
        meta_limits=MetaLimits(
            max_file_bytes=config.meta_max_file_bytes,
            max_total_bytes=config.meta_max_total_bytes,
            max_images=config.meta_max_images,
        ),
        base_registries=config.base_registries,
    )


async def _buildah_ready(app: web.Application) -> None:
    """Ready only where buildah and the build sandbox can run: builds never go unsandboxed."""
    config = app[CONFIG]
    assert isinstance(config, Config)
    if shutil.which(config.buildah) is None:
        raise FileNotFoundError(config.buildah)
    backend = app[BUILDER].backend
    if isinstance(backend, BuildahBackend) and backend.sandbox is not None:
        reason = await backend.sandbox.check()
        if reason is not None:
            raise RuntimeError(f"build sandbox: {reason}")


async def builder_context(app: web.Application) -> AsyncIterator[None]:
    """The builder, its jobs and image deletions; the log bucket made if missing; cancels polled."""
    config = app[CONFIG]
    assert isinstance(config, Config)
    builder = make_builder(config)
    sink = builder.sink
    assert isinstance(sink, S3LogSink)
    try:
        await sink.ensure_bucket()
    except Exception as exc:  # noqa: BLE001 - logs are retried per build; builds go on without
        log.warning("log bucket not reachable", extra={"error": type(exc).__name__})
    jobs = Jobs(
        app[POOL],
        concurrency=config.concurrency,
        poll_seconds=config.cancel_poll_seconds,
        name="builder",
    )
    store = Store(app[POOL])
    app[BUILDER], app[BUILDS], app[JOBS] = builder, Builds(builder, store), jobs
    # The remover shares the builder's registry client (same account, no state of its own).
    app[DELETIONS] = ImageDeletions(store, ImageRemover(builder.registry_client), jobs)
    app[READY_CHECKS].append(_buildah_ready)
    watch(app, jobs.loop)
    await jobs.start()
    yield
    await jobs.stop()
    await asyncio.to_thread(shutil.rmtree, config.work_dir.resolve() / "builds", True)


def create_app(config: Config) -> web.Application:
    app = create_service_app("builder", config, routes=routes, migrations=MIGRATIONS)
    app.cleanup_ctx.append(builder_context)
    app.cleanup_ctx.append(bus_context(consumers))
    return app
