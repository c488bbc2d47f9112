"""Use cases over the pipeline: rebuild, build/status/logs/profile, review, registry access."""

from __future__ import annotations

from typing import Any

from sage_common.auth import Principal
from sage_common.errors import Forbidden, NotFound, Unauthorized

from . import acl, service_builds, views
from . import service_access as access
from . import store_apps as apps
from . import store_catalogue as store
from .acl import Permission
from .models import RegistryAccessQuery, ReviewDecision
from .service import Ecr


async def rebuild(
    ecr: Ecr, who: Principal | None, ns: str, name: str, version: str
) -> dict[str, int]:
    """A new build of a version that is not frozen: new build id, `app.submitted` again."""
    async with ecr.pool.acquire() as conn, conn.transaction():
        app = await access.app_for(
            conn, who, ecr.policy, ns, name, version, Permission.WRITE, for_update=True
        )
        if who is not None and not (who.is_approved or who.is_admin):
            raise Forbidden(
                f"your account is not approved to build apps yet: {service_builds.ident(app)} stays "
                "registered (stored, not built); ask an administrator to approve your account"
            )
        return {
            "build_number": await service_builds.rebuild(conn, app, access.require_submitter(who))
        }


async def get_build(
    ecr: Ecr, who: Principal | None, ns: str, name: str, version: str, base_url: str
) -> dict[str, Any]:
    """The current build, with `url`: the build's address, whose `console` is its log."""
    async with ecr.pool.acquire() as conn:
        app = await access.app_for(conn, who, ecr.policy, ns, name, version, Permission.READ)
        build = await apps.get_build(conn, app["build_id"])
    view = views.build_view(app, build)
    view["url"] = views.build_url(base_url, app, build["build_number"]) if build else None
    return view


async def status(
    ecr: Ecr, who: Principal | None, ns: str, name: str, version: str
) -> dict[str, Any]:
    """The state and every transition so far (what `sage ecr app submit --wait` follows)."""
    async with ecr.pool.acquire() as conn:
        app = await access.app_for(conn, who, ecr.policy, ns, name, version, Permission.READ)
        rows = await apps.history(conn, app["id"])
        build = await apps.get_build(conn, app["build_id"])
    return {
        "id": service_builds.ident(app),
        "state": app["state"],
        "frozen": app["frozen"],
        "build_number": app["build_number"],
        **views.outcome_view(build),
        "history": [views.history_view(r) for r in rows],
    }


async def logs(ecr: Ecr, who: Principal | None, ns: str, name: str, version: str) -> dict[str, Any]:
    """Where the current build's log is, and its last lines as the builder reported them."""
    async with ecr.pool.acquire() as conn:
        app = await access.app_for(conn, who, ecr.policy, ns, name, version, Permission.READ)
        build = await apps.get_build(conn, app["build_id"])
    done = (build or {}).get("done") or {}
    return {
        "id": service_builds.ident(app),
        "build_number": app["build_number"],
        "build_id": str(build["build_id"]) if build else None,
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
    async with ecr.pool.acquire() as conn:
        app = await access.app_for(conn, who, ecr.policy, ns, name, version, Permission.READ)
        build = await apps.get_build(conn, app["build_id"])
    if not build or not build.get("profile"):
        raise NotFound(f"{service_builds.ident(app)} has no profile yet (state: {app['state']})")
    return {
        "id": service_builds.ident(app),
        "build_number": build["build_number"],
        **build["profile"],
    }


async def review(
    ecr: Ecr, who: Principal | None, ns: str, name: str, version: str, body: ReviewDecision
) -> str:
    """Approve or reject a version in review; only admins and the reviewers group may."""
    async with ecr.pool.acquire() as conn, conn.transaction():
        app = await access.app_for(
            conn, who, ecr.policy, ns, name, version, Permission.READ, for_update=True
        )
        if not acl.is_reviewer(who, ecr.policy.reviewers_group):
            raise access.deny(
                who, f"only reviewers (group {ecr.policy.reviewers_group}) may review apps"
            )
        assert who is not None
        if not ecr.policy.allow_self_review:
            await _refuse_own_app(conn, app, who)
        await service_builds.review(conn, app, who, body.decision, body.comment)
        return await apps.app_document(conn, app["id"])


async def _refuse_own_app(conn: apps.Conn, app: dict[str, Any], who: Principal) -> None:
    """403 for a reviewer who submitted the version or asked for its current build."""
    build = await apps.get_build(conn, app["build_id"])
    authors = {app["owner"], (build or {}).get("requested_by")}
    if who.username in authors:
        raise Forbidden(
            f"{who.username} submitted {service_builds.ident(app)}: reviewers may not review their own"
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
    async with ecr.pool.acquire() as conn:
        if await store.get_repository(conn, ns, name) is None:
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
        granted = await access.on_repository(conn, asker, ecr.policy, ns, name)
    if Permission.READ in granted:
        answer["actions"] = ["pull"]
    return answer
