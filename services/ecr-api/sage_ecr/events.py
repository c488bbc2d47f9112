"""The consumer of the builder's and profiler's events: parse the data, hand it to the pipeline.

It runs inside the bus's transaction, which also records the event id, so a redelivery is a no-op;
data that does not parse fails, is retried, and ends in the dead-letter queue with its error.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from sage_common.bus import Consumer
from sage_common.events import CloudEvent
from sage_common.schemas import AppImagesDeleted, BuildDone, BuildStarted, ProfileDone
from sage_common.web import BUS, CONFIG, POOL

from . import service_builds, service_images
from .service import Ecr
from .state import ECR

ROUTING_KEYS = ("build.started", "build.done", "profile.done", "app.images_deleted")


class PipelineConsumer(Consumer):
    """Moves app versions along as builds start, finish and get profiled; frees the names of
    deleted versions once their images are gone."""

    def __init__(self, ecr: Ecr, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.ecr = ecr

    async def handle(self, conn: asyncpg.Connection, event: CloudEvent) -> None:
        key, tx = event.routing_key, self.ecr.store.joined(conn)
        if key == "build.started":
            await service_builds.on_build_started(tx, event.parse_data(BuildStarted), event.id)
        elif key == "build.done":
            await service_builds.on_build_done(tx, event.parse_data(BuildDone), event.id)
        elif key == "profile.done":
            await service_builds.on_profile_done(tx, event.parse_data(ProfileDone), event.id)
        elif key == "app.images_deleted":
            await service_images.on_images_deleted(tx, event.parse_data(AppImagesDeleted))
        else:
            raise ValueError(f"this consumer does not handle {key!r}")


def consumers(app: web.Application) -> list[Consumer]:
    """What `bus_context` starts for the ECR API."""
    queue = getattr(app[CONFIG], "consumer_queue", "ecr-api.pipeline")
    return [PipelineConsumer(app[ECR], app[POOL], app[BUS], name=queue, routing_keys=ROUTING_KEYS)]
