"""The images of deleted versions: the builder deletes them; their names stay unclaimable until then.

Registry access follows the catalogue's names, so an image left behind would be readable by
whoever claimed the name next: until `app.images_deleted` confirms, nobody, the former owner
included, may claim that version, repository or namespace (docs/adr/0011-deleted-images.md).
"""

from __future__ import annotations

import logging
import uuid

from sage_common.errors import Conflict
from sage_common.schemas import AppDeleted, AppImagesDeleted, DeletedBuild

from . import service_builds, views
from .records import App
from .store import Session

log = logging.getLogger(__name__)


async def forget(tx: Session, app: App, requested_by: str) -> None:
    """Queue `app.deleted` for the (locked) version about to be deleted, and hold its names."""
    builds = []
    for pushed in await tx.pushed_builds(app.id):
        done = pushed.done or {}
        builds.append(
            DeletedBuild(
                build_id=str(pushed.build_id),
                image=done.get("image"),
                index_digest=done.get("index_digest"),
                images=done.get("images") or [],
            )
        )
    data = AppDeleted(
        app_id=app.ident,
        repository=f"{app.namespace}/{app.name}",
        requested_by=requested_by,
        builds=builds,
    )
    event = await service_builds.emit(tx, data, app.ident)
    await tx.add_deletion(
        uuid.UUID(event.id), app.namespace, app.name, app.version, app.owner, requested_by
    )


async def require_claimable(
    tx: Session, namespace: str, name: str | None = None, version: str | None = None
) -> None:
    """409 if claiming this (a new namespace, a new repository, a version) would reach images of
    a deleted version that the builder has not yet confirmed gone."""
    if await tx.get_namespace(namespace) is None:
        name = version = None  # the whole namespace would be claimed
        what = f"namespace {namespace}"
    elif name is not None and await tx.get_repository(namespace, name) is None:
        version = None
        what = f"repository {namespace}/{name}"
    elif name is not None and version is not None:
        what = views.app_id(namespace, name, version)
    else:
        return
    if await tx.pending_deletions(namespace, name, version):
        raise Conflict(
            f"{what} held images of a deleted app that are still being removed from the "
            "registry: try again in a minute"
        )


async def on_images_deleted(tx: Session, data: AppImagesDeleted) -> None:
    """The builder deleted a version's images: its names may be claimed again."""
    try:
        event_id = uuid.UUID(data.deletion_id)
    except ValueError:
        log.warning("app.images_deleted names no deletion of ours", extra={"app_id": data.app_id})
        return
    if await tx.confirm_deletion(event_id, data.app_id) is None:
        log.info("app.images_deleted for no pending deletion", extra={"app_id": data.app_id})
        return
    log.info(
        "images of a deleted app removed",
        extra={"app_id": data.app_id, "deleted": len(data.deleted), "kept": len(data.kept)},
    )
