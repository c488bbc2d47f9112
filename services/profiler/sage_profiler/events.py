"""The profiler's consumers: `build.done` runs a profile, `build.cancel` stops one.

Wiring only: the profile's use cases are in `service_profiles.py`, run by `sage_common.work`.
"""

from __future__ import annotations

from aiohttp import web

from sage_common.bus import Consumer
from sage_common.schemas import BuildDone
from sage_common.web import BUS, CONFIG, POOL
from sage_common.work import CancelConsumer, WorkConsumer

from .config import Config
from .state import JOBS, PROFILES


def consumers(app: web.Application) -> list[Consumer]:
    """What `bus_context` starts for the profiler: both share the profiles running here."""
    config = app[CONFIG]
    assert isinstance(config, Config)
    pool, bus, jobs = app[POOL], app[BUS], app[JOBS]
    return [
        WorkConsumer(
            pool, bus, jobs, app[PROFILES], BuildDone, name=config.queue, prefetch=jobs.concurrency
        ),
        CancelConsumer(pool, bus, jobs, name=config.cancel_queue),
    ]
