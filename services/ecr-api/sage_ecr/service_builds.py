"""The pipeline side of the catalogue: builds, the events that move a version along, and review.

Every state change and the event it causes are written in one transaction (the outbox), with the
app row locked, so an HTTP action and a bus event on the same version never interleave.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime

from sage_common.auth import Principal
from sage_common.errors import Conflict
from sage_common.events import CloudEvent, EventData, make_event
from sage_common.schemas import (
    AppPublished,
    AppRejected,
    AppSource,
    AppSubmitted,
    BuildCancelled,
    BuildDone,
    BuildStarted,
    ProfileDone,
    ReviewRequested,
)

from . import service_meta, views
from .records import App, Build
from .states import IN_FLIGHT, Facts, State, advance
from .store import Session, Store

log = logging.getLogger(__name__)
SOURCE = "ecr-api"


async def emit(tx: Session, data: EventData, subject: str) -> CloudEvent:
    """Queue an event in the caller's transaction; the outbox relay publishes it after commit."""
    event = make_event(SOURCE, data, subject=subject)
    await tx.enqueue(event)
    return event


async def refresh_doc(tx: Session, app_id: int) -> None:
    """Recompute the stored document after any change to the version or its current build."""
    app = await tx.get_app_by_id(app_id)
    assert app is not None
    build = await tx.get_build(app.build_id)
    doc = views.app_doc(app, build)
    doc.update(views.meta_fields(app, await tx.meta_files(app.id)))
    await tx.save_doc(app_id, doc, views.DOC_VERSION)


async def refresh_stale_docs(store: Store, *, batch: int = 200) -> int:
    """Recompute the stored documents made by an older `views.app_doc`; how many were. Run at
    start: replicas starting together share the work (locked rows are skipped)."""
    count = 0
    while True:
        async with store.transaction() as tx:
            ids = await tx.lock_stale_docs(views.DOC_VERSION, batch)
            for app_id in ids:
                await refresh_doc(tx, app_id)
        count += len(ids)
        if len(ids) < batch:
            break
    if count:
        log.info("app documents recomputed", extra={"count": count})
    return count


async def start_build(tx: Session, app: App, requested_by: str, cause: str) -> int:
    """A new build of the (locked) version: new build id, `submitted`, `app.submitted` queued."""
    await cancel_build(tx, app, requested_by)
    number = app.build_number + 1
    build = await tx.insert_build(app.id, number, requested_by)
    previous = app.state if app.build_number or app.state == State.REGISTERED else None
    await tx.update_app(
        app.id,
        state=State.SUBMITTED.value,
        build_id=build.build_id,
        build_number=number,
        reviewer=None,
        review_comment=None,
        reviewed_at=None,
    )
    await tx.add_history(
        app.id, previous, State.SUBMITTED, cause, build_number=number, actor=requested_by
    )
    spec = app.spec
    await emit(
        tx,
        AppSubmitted(
            app_id=app.ident,
            build_id=str(build.build_id),
            source=AppSource(**spec["source"]),
            submitter=requested_by,
            testing=spec.get("testing"),
            hardware=spec.get("hardware"),
        ),
        app.ident,
    )
    await refresh_doc(tx, app.id)
    return number


async def register(tx: Session, app: App, requested_by: str, cause: str) -> None:
    """Keep the (locked) version out of the pipeline: `registered`, no current build, as SAGE
    does with an unapproved user's submission; an approved user builds it (`POST /api/builds`)."""
    await cancel_build(tx, app, requested_by)
    await tx.update_app(app.id, state=State.REGISTERED.value, build_id=None)
    previous = None if cause == "submitted" else app.state
    await tx.add_history(app.id, previous, State.REGISTERED, cause, actor=requested_by)
    await refresh_doc(tx, app.id)


async def cancel_build(tx: Session, app: App, requested_by: str) -> None:
    """Tell the builder and profiler to stop the version's current build, if one is under way."""
    if app.state in IN_FLIGHT and app.build_id is not None:
        await emit(
            tx,
            BuildCancelled(app_id=app.ident, build_id=str(app.build_id), requested_by=requested_by),
            app.ident,
        )


async def rebuild(tx: Session, app: App, who: Principal) -> int:
    if app.frozen:
        raise Conflict(f"{app.ident} is published and frozen: submit a new version instead")
    return await start_build(tx, app, who.username, "rebuild")


async def review(tx: Session, app: App, who: Principal, decision: str, comment: str) -> None:
    """Approve (publish, freeze, `app.published`) or reject (`app.rejected`) a version in review."""
    if app.state != State.IN_REVIEW:
        raise Conflict(f"{app.ident} is {app.state}, not in review")
    build = await tx.get_build(app.build_id)
    done = (build.done if build else None) or {}
    approved = decision == "approve"
    target = State.PUBLISHED if approved else State.REJECTED
    await tx.update_app(
        app.id,
        state=target.value,
        reviewer=who.username,
        review_comment=comment,
        reviewed_at=datetime.now(UTC),
        frozen=approved or app.frozen,
    )
    event: EventData = (
        AppPublished(
            app_id=app.ident,
            reviewer=who.username,
            comment=comment,
            image=done.get("image"),
            index_digest=done.get("index_digest"),
            images=done.get("images", []),
        )
        if approved
        else AppRejected(app_id=app.ident, reviewer=who.username, comment=comment)
    )
    await tx.add_history(
        app.id,
        app.state,
        target,
        f"review.{decision}",
        build_number=app.build_number,
        actor=who.username,
    )
    await emit(tx, event, app.ident)
    await refresh_doc(tx, app.id)


# ---- events from the builder and the profiler

Record = Callable[[uuid.UUID], Awaitable[bool]]


async def on_build_started(tx: Session, data: BuildStarted, event_id: str) -> None:
    async def record(build_id: uuid.UUID) -> bool:
        return await tx.record_started(build_id, data.started_at, event_id, data.log_location)

    await _apply(tx, data.app_id, data.build_id, record)


async def on_build_done(tx: Session, data: BuildDone, event_id: str) -> None:
    async def record(build_id: uuid.UUID) -> bool:
        return await tx.record_done(build_id, data.status, data.model_dump(mode="json"), event_id)

    async def keep_meta_files(app: App, build_id: uuid.UUID) -> None:
        files = service_meta.accepted(app, build_id, data.meta_files)
        await tx.replace_meta_files(app.id, build_id, files)

    await _apply(tx, data.app_id, data.build_id, record, keep_meta_files)


async def on_profile_done(tx: Session, data: ProfileDone, event_id: str) -> None:
    async def record(build_id: uuid.UUID) -> bool:
        return await tx.record_profile(
            build_id, data.status, data.model_dump(mode="json"), event_id
        )

    await _apply(tx, data.app_id, data.build_id, record)


async def _apply(
    tx: Session,
    app_ident: str,
    build_ident: str,
    record: Record,
    on_current: Callable[[App, uuid.UUID], Awaitable[None]] | None = None,
) -> None:
    """Record the event's fact on its build, then move the version as far as the facts allow
    (`on_current(app, build_id)` first, for facts that only the current build may set)."""
    try:
        build_id = uuid.UUID(build_ident)
    except ValueError:
        log.warning("event names a build id that is not ours", extra={"build_id": build_ident})
        return
    found = await tx.get_build(build_id)
    if found is None:
        log.info("event for an unknown or deleted build ignored", extra={"build_id": build_ident})
        return
    app = await tx.get_app_by_id(found.app_id, for_update=True)
    if app is None or app.ident != app_ident:
        log.warning("event's app id does not match its build", extra={"app_id": app_ident})
        return
    if not await record(build_id):
        return  # a duplicate: the fact was known already
    if app.build_id != build_id:
        log.info(
            "event for a superseded build recorded, state unchanged", extra={"app_id": app_ident}
        )
        return
    if on_current is not None:
        await on_current(app, build_id)
    build = await tx.get_build(build_id)
    assert build is not None
    facts = Facts(
        started=build.started_event is not None, build=build.status, profile=build.profile_status
    )
    moves = advance(State(app.state), facts)
    for move in moves:
        await tx.add_history(
            app.id,
            move.source,
            move.target,
            move.cause,
            event_id=_event_of(build, move.cause),
            build_number=build.build_number,
        )
    if moves:
        await tx.update_app(app.id, state=moves[-1].target.value)
        if moves[-1].target == State.IN_REVIEW:
            await emit(
                tx,
                ReviewRequested(
                    app_id=app_ident,
                    build=views.build_view(replace(app, state=State.IN_REVIEW.value), build),
                    profile=views.profile_summary(build.profile) or {},
                ),
                app_ident,
            )
    await refresh_doc(tx, app.id)


def _event_of(build: Build, cause: str) -> str | None:
    """The id of the event that recorded `cause` (`build.started`, ...) on the build."""
    return {
        "build.started": build.started_event,
        "build.done": build.done_event,
        "profile.done": build.profile_event,
    }[cause]
