"""The ECR API's aiohttp application: the service frame, the use cases' context, the bus."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web
from sage_common.auth import Introspector
from sage_common.web import POOL, bus_context, create_service_app

from .access import Policy
from .cache import invalidate_on_write, listener_context
from .config import Config
from .events import consumers
from .handlers import ECR
from .routes import routes
from .service import Ecr

MIGRATIONS = Path(__file__).parent / "migrations"


def _ecr_context(config: Config):  # type: ignore[no-untyped-def]
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        app[ECR] = Ecr(
            pool=app[POOL],
            policy=Policy(
                reviewers_group=config.reviewers_group,
                builder_account=config.builder_account,
                registry_access_clients=tuple(config.registry_access_clients),
            ),
            max_body_bytes=config.max_body_bytes,
            spec_max_depth=config.spec_max_depth,
            spec_max_nodes=config.spec_max_nodes,
        )
        yield

    return ctx


def create_app(config: Config, *, introspector: Introspector | None = None) -> web.Application:
    """The ECR API; pass `introspector` to check tokens without the auth service (benchmarks)."""
    app = create_service_app(
        "ecr-api",
        config,
        routes=routes,
        migrations=MIGRATIONS,
        introspector=introspector,
        client_max_size=config.max_body_bytes,
    )
    app.middlewares.append(invalidate_on_write())
    app.cleanup_ctx.append(_ecr_context(config))
    app.cleanup_ctx.append(listener_context(config.listing_cache_entries))
    if config.use_bus:
        app.cleanup_ctx.append(bus_context(consumers))
    return app
