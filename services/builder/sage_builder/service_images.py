"""The use cases of `app.deleted`: fence the version's builds, delete what they pushed, confirm.

A digest that a live version of the repository also pushed (the layer cache makes identical
rebuilds) is kept; a build still running, or a registry that cannot be reached or refuses, fails
the event, which is retried with back-off (docs/adr/0011-deleted-images.md gives every step's why).
"""

from __future__ import annotations

import logging

import asyncpg
from prometheus_client import Counter

from sage_common.events import make_event
from sage_common.schemas import AppDeleted, AppImagesDeleted
from sage_common.work import Jobs

from .records import Pushed
from .registry_images import ImageRemover
from .service_builds import SOURCE
from .store import Store

log = logging.getLogger(__name__)

MANIFESTS_DELETED = Counter(
    "sage_builder_manifests_deleted_total", "Image manifests deleted from the registry"
)


class BuildStillRunning(Exception):
    """A build of the deleted version has not stopped yet (its images may still be pushed), or
    another version of the repository is building (it may push the same digests)."""


class ImageDeletions:
    """Deletes the images of deleted app versions (the use cases of `app.deleted`)."""

    def __init__(self, store: Store, remover: ImageRemover, jobs: Jobs) -> None:
        self.store, self.remover, self.jobs = store, remover, jobs

    async def delete(self, data: AppDeleted, deletion_id: str) -> AppImagesDeleted:
        """Fence the version's builds, then delete what they pushed and no live version uses."""
        if data.app_id.rpartition(":")[0] != data.repository:
            raise ValueError(f"{data.app_id} is not a version of {data.repository}")
        build_ids = [b.build_id for b in data.builds]
        store = self.store
        async with store.transaction() as conn:
            await store.lock_repository(conn, data.repository)
            await store.fence(conn, data.app_id, build_ids, deletion_id, data.requested_by)
            still = await store.running(conn, build_ids)
            busy = await store.building_in(conn, data.repository, data.app_id)
            digests = _ordered(data, await store.pushed(conn, data.app_id, build_ids))
            kept = await store.in_use(conn, data.repository, data.app_id, digests)
        for build_id in still:
            self.jobs.cancel(build_id, f"app deleted by {data.requested_by}")
        if still or busy:
            raise BuildStillRunning(
                f"builds of {data.app_id} ({', '.join(still) or 'none'}) or of other versions "
                f"of {data.repository} ({', '.join(busy) or 'none'}) still run"
            )
        removal = await self.remover.remove(data.repository, [d for d in digests if d not in kept])
        MANIFESTS_DELETED.inc(len(removal.deleted))
        return AppImagesDeleted(
            app_id=data.app_id,
            deletion_id=deletion_id,
            deleted=removal.deleted,
            absent=removal.absent,
            kept=kept,
        )

    async def answer(self, conn: asyncpg.Connection, answer: AppImagesDeleted) -> None:
        """Queue `app.images_deleted` (in the transaction that records the event)."""
        await self.store.enqueue(conn, make_event(SOURCE, answer, subject=answer.app_id))

    def finished(self, answer: AppImagesDeleted) -> None:
        """After the answer is committed: the log line."""
        log.info(
            "images of a deleted app removed",
            extra={
                "app_id": answer.app_id,
                "deleted": len(answer.deleted),
                "absent": len(answer.absent),
                "kept": len(answer.kept),
            },
        )


def _ordered(data: AppDeleted, pushed: Pushed) -> list[str]:
    """Every digest to delete, once: what the catalogue knew and what this builder recorded
    (a build that finished after the deletion), indexes before the manifests they list."""
    indexes = [*pushed.indexes, *(b.index_digest for b in data.builds if b.index_digest)]
    manifests = [*pushed.manifests, *(i.digest for b in data.builds for i in b.images)]
    return list(dict.fromkeys([*indexes, *manifests]))
