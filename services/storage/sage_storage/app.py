"""The storage service's aiohttp application: the common frame, the stores, and the sweeper."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from sage_common.auth import Introspector
from sage_common.errors import Unavailable
from sage_common.supervise import Supervised
from sage_common.web import POOL, READY_CHECKS, create_service_app, supervise

from .config import Config
from .objectstore import ObjectStore
from .routes import ADMIN, SCOPES, routes
from .s3 import S3ObjectStore
from .service import Storage
from .service_upkeep import sweep_forever
from .state import STORAGE
from .store import Store

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger(__name__)


def create_app(
    config: Config,
    *,
    objects: ObjectStore | None = None,
    introspector: Introspector | None = None,
) -> web.Application:
    """The app; tests pass an in-memory `objects` or a local `introspector`."""
    app = create_service_app(
        "storage",
        config,
        routes=routes,
        scopes=SCOPES,
        admin_scope=ADMIN,
        migrations=MIGRATIONS,
        introspector=introspector,
        # Every query of this service is one statement or one transaction, and the sweeper
        # releases its advisory lock itself: no reset query (a round trip) after each.
        reset_sessions=False,
    )

    async def storage_context(app: web.Application) -> AsyncIterator[None]:
        store = S3ObjectStore(config) if objects is None else objects
        storage = Storage(Store(app[POOL]), store, config)
        app[STORAGE] = storage

        async def object_store_ready(app: web.Application) -> None:
            await store.ensure_bucket()

        app[READY_CHECKS].append(object_store_ready)
        try:
            await store.ensure_bucket()
        except Unavailable:
            log.warning("the object store is unreachable at start-up; /readyz retries")
        sweeper = supervise(app, Supervised("storage-sweeper", lambda: sweep_forever(storage)))
        yield
        await sweeper.stop()
        if objects is None and isinstance(store, S3ObjectStore):
            await store.close()

    app.cleanup_ctx.append(storage_context)
    return app
