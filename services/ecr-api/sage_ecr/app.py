"""The ECR API's aiohttp application: the service frame, the use cases' context, the bus."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from sage_common.auth import Introspector
from sage_common.web import POOL, bus_context, create_service_app

from .cache import invalidate_on_write, listener_context
from .config import Config
from .events import consumers
from .routes import ADMIN, SCOPES, routes
from .s3 import S3LogReader
from .service import Ecr
from .service_access import Policy
from .service_builds import refresh_stale_docs
from .service_logs import BuildLogs, LogReader
from .service_meta import MetaFiles
from .state import BUILD_LOGS, ECR, META_FILES
from .store import PgStore

MIGRATIONS = Path(__file__).parent / "migrations"


def _ecr_context(config: Config):  # type: ignore[no-untyped-def]
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        store = PgStore(app[POOL])
        app[ECR] = Ecr(
            store=store,
            policy=Policy(
                reviewers_group=config.reviewers_group,
                builder_account=config.builder_account,
                registry_access_clients=tuple(config.registry_access_clients),
                allow_self_review=config.allow_self_review,
            ),
            max_body_bytes=config.max_body_bytes,
            spec_max_depth=config.spec_max_depth,
            spec_max_nodes=config.spec_max_nodes,
            public_url=config.public_url,
        )
        await refresh_stale_docs(store)
        yield

    return ctx


def _s3_context(config: Config, log_reader: LogReader | None):  # type: ignore[no-untyped-def]
    """The readers of the builder's bucket (build logs, ecr-meta files); S3 is not asked at
    start, so an S3 outage only affects those routes."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        logs = BuildLogs(
            reader=log_reader or S3LogReader.from_config(config),
            bucket=config.build_log_bucket,
            chunk_bytes=config.build_log_chunk_bytes,
        )
        files = MetaFiles(reader=S3LogReader.from_config(config), bucket=config.build_log_bucket)
        app[BUILD_LOGS], app[META_FILES] = logs, files
        yield
        await files.reader.close()
        await logs.reader.close()

    return ctx


def create_app(
    config: Config, *, introspector: Introspector | None = None, log_reader: LogReader | None = None
) -> web.Application:
    """The ECR API; `introspector` checks tokens without the auth service (benchmarks),
    `log_reader` reads build logs from elsewhere than S3 (unit tests)."""
    app = create_service_app(
        "ecr-api",
        config,
        routes=routes,
        scopes=SCOPES,
        admin_scope=ADMIN,
        migrations=MIGRATIONS,
        introspector=introspector,
        client_max_size=config.max_body_bytes,
        # Nothing here leaves session state on a pooled connection (the catalogue LISTEN has its
        # own connection, the migrations unlock in `finally`): skip the reset after every use.
        reset_sessions=False,
    )
    app.middlewares.append(invalidate_on_write)
    app.cleanup_ctx.append(_ecr_context(config))
    app.cleanup_ctx.append(_s3_context(config, log_reader))
    app.cleanup_ctx.append(listener_context(config.listing_cache_entries))
    if config.use_bus:
        app.cleanup_ctx.append(bus_context(consumers))
    return app
