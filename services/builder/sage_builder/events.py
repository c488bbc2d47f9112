"""The builder's consumers, wiring only: `app.submitted` runs a build (`service_builds.py`, on
`sage_common.work`), `build.cancel` stops one, `app.deleted` deletes a deleted version's images
(`service_images.py`)."""

from __future__ import annotations

from aiohttp import web

from sage_common.bus import Consumer
from sage_common.schemas import AppSubmitted
from sage_common.web import BUS, CONFIG, POOL
from sage_common.work import CancelConsumer, WorkConsumer

from .config import Config
from .events_images import AppDeletedConsumer
from .state import BUILDS, DELETIONS, JOBS


def consumers(app: web.Application) -> list[Consumer]:
    """What `bus_context` starts for the builder."""
    config = app[CONFIG]
    assert isinstance(config, Config)
    pool, bus, jobs = app[POOL], app[BUS], app[JOBS]
    # More messages in hand than slots, so a rebuild is seen (and cancels) while one runs.
    prefetch = jobs.concurrency * 2 + 2
    return [
        CancelConsumer(pool, bus, jobs, name=config.cancel_queue),
        WorkConsumer(
            pool, bus, jobs, app[BUILDS], AppSubmitted, name=config.queue, prefetch=prefetch
        ),
        AppDeletedConsumer(
            pool,
            bus,
            app[DELETIONS],
            name=config.app_deleted_queue,
            retry_delays=tuple(config.deletion_retry_seconds),
        ),
    ]
