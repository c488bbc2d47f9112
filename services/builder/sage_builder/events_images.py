"""The consumer of `app.deleted`: parse, hand it to `service_images`, answer in the transaction
that records the event (so a redelivery is a no-op). A failure (a build still running, a registry
that refuses) is retried with back-off, then dead-lettered."""

from __future__ import annotations

import asyncpg

from sage_common.bus import Bus, Consumer, Skip
from sage_common.events import CloudEvent
from sage_common.schemas import AppDeleted

from .service_images import ImageDeletions


class AppDeletedConsumer(Consumer):
    """Deletes a deleted version's images from the registry and answers `app.images_deleted`."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        bus: Bus,
        deletions: ImageDeletions,
        *,
        name: str,
        retry_delays: tuple[float, ...],
    ) -> None:
        super().__init__(
            pool, bus, name=name, routing_keys=["app.deleted"], retry_delays=retry_delays
        )
        self.deletions = deletions

    async def process(self, event: CloudEvent) -> None:
        if await self.seen(event.id):
            raise Skip(event.id)
        answer = await self.deletions.delete(event.parse_data(AppDeleted), event.id)
        async with self.transaction(event) as conn:
            await self.deletions.answer(conn, answer)
        self.deletions.finished(answer)
