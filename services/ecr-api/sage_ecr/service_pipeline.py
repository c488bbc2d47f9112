"""Use cases over the pipeline: rebuild, build/status/logs/profile, review, registry access."""

from __future__ import annotations

from typing import Any

from sage_common.auth import Principal
from sage_common.errors import Forbidden, NotFound, Unauthorized

from . import acl, service_builds, views
from . import service_access as access
from .acl import Permission
from .models import RegistryAccessQuery, ReviewDecision
from .records import App
from .service import Ecr
from .store import Session


async def rebuild(
    ecr: Ecr, who: Principal | None, ns: str, name: str, version: str
) -> dict[str, int]:
    """A new build of a version that is not frozen: new build id, `app.submitted` again."""
    async with ecr.store.transaction() as tx:
        app = await access.app_for(
            tx, who, ecr.policy, ns, name, version, Permission.WRITE, for_update=True
        )
        if who is not None and not (who.is_approved or who.is_admin):
            raise Forbidden(
                f"your account is not approved to build apps yet: {app.ident} stays "
                "registered (stored, not built); ask an administrator to approve your account"
            )
        return {
            "build_number": await service_builds.rebuild(tx, app, access.require_submitter(who))
        }


async def get_build(
    ecr: Ecr, who: Principal | None, ns: str, name: str, version: str, base_url: str
) -> dict[str, Any]:
    """The current build, with `url`: the build's address, whose `console` is its log."""
    async with ecr.store.read() as tx:
        app = await access.app_for(tx, who, ecr.policy, ns, name, version, Permission.READ)
        build = await tx.get_build(app.build_id)
    view = views.build_view(app, build)
    view["url"] = views.build_url(base_url, app, build.build_number) if build else None
    return view


async def status(
    ecr: Ecr, who: Principal | None, ns: str, name: str, version: str
) -> dict[str, Any]:
    """The state and every transition so far (what `sage ecr app submit --wait` follows)."""
    async with ecr.store.read() as tx:
        app = await access.app_for(tx, who, ecr.policy, ns, name, version, Permission.READ)
        history = await tx.history(app.id)
        build = await tx.get_build(app.build_id)
    return {
        "id": app.ident,
        "state": app.state,
        "frozen": app.frozen,
        "build_number": app.build_number,
        **views.outcome_view(build),
        "history": [views.history_view(h) for h in history],
    }


async def logs(ecr: Ecr, who: Principal | None, ns: str, name: str, version: str) -> dict[str, Any]:
    """Where the current build's log is, and its last lines as the builder reported them."""
    async with ecr.store.read() as tx:
        app = await access.app_for(tx, who, ecr.policy, ns, name, version, Permission.READ)
        build = await tx.get_build(app.build_id)
    done = (build.done if build else None) or {}
    return {
        "id": app.ident,
        "build_number": app.build_number,
        "build_id": str(build.build_id) if build else None,
        "finished": bool(done),
        "log_location": views.log_location(build),
        "log_tail": done.get("log_tail", []),
        "error_class": done.get("error_class"),
        "error": done.get("error"),
    }


async def profile(
    ecr: Ecr, who: Principal | None, ns: str, name: str, version: str
) -> dict[str, Any]:
    """The profiler's report on the current build; 404 until there is one."""
    async with ecr.store.read() as tx:
        app = await access.app_for(tx, who, ecr.policy, ns, name, version, Permission.READ)
        build = await tx.get_build(app.build_id)
    if not build or not build.profile:
        raise NotFound(f"{app.ident} has no profile yet (state: {app.state})")
    return {"id": app.ident, "build_number": build.build_number, **build.profile}


async def review(
    ecr: Ecr, who: Principal | None, ns: str, name: str, version: str, body: ReviewDecision
) -> str:
    """Approve or reject a version in review; only admins and the reviewers group may."""
    async with ecr.store.transaction() as tx:
        app = await access.app_for(
            tx, who, ecr.policy, ns, name, version, Permission.READ, for_update=True
        )
        if not acl.is_reviewer(who, ecr.policy.reviewers_group):
            raise access.deny(
                who, f"only reviewers (group {ecr.policy.reviewers_group}) may review apps"
            )
        assert who is not None
        if not ecr.policy.allow_self_review:
            await _refuse_own_app(tx, app, who)
        await service_builds.review(tx, app, who, body.decision, body.comment)
        return await tx.app_document(app.id)


async def _refuse_own_app(tx: Session, app: App, who: Principal) -> None:
    """403 for a reviewer who submitted the version or asked for its current build."""
    build = await tx.get_build(app.build_id)
    authors = {app.owner, build.requested_by if build else None}
    if who.username in authors:
        raise Forbidden(
            f"{who.username} submitted {app.ident}: reviewers may not review their own"
            " apps; ask another reviewer"
        )


async def registry_access(
    ecr: Ecr, who: Principal | None, query: RegistryAccessQuery
) -> dict[str, Any]:
    """The registry actions `username` may take on `repository` (asked by the auth service)."""
    if who is None:
        raise Unauthorized("the auth service must authenticate")
    trusted = who.is_admin or (
        who.is_service and who.client_id in ecr.policy.registry_access_clients
    )
    if not trusted:
        raise Forbidden("only the auth service may ask for registry access")
    answer: dict[str, Any] = {
        "repository": query.repository,
        "username": query.username,
        "actions": [],
    }
    ns, sep, name = query.repository.partition("/")
    if not sep or "/" in name:
        return answer
    async with ecr.store.read() as tx:
        if await tx.get_repository(ns, name) is None:
            return answer
        if query.username == ecr.policy.builder_account:
            answer["actions"] = ["pull", "push"]
            return answer
        asker = None
        if query.username:
            groups = [g for g in query.groups.split(",") if g]
            service = query.username.removeprefix("service:")
            asker = Principal(
                username=query.username,
                groups=groups,
                is_admin=query.admin,
                client_id=service if service != query.username else None,
            )
        granted = await access.on_repository(tx, asker, ecr.policy, ns, name)
    if Permission.READ in granted:
        answer["actions"] = ["pull"]
    return answer
