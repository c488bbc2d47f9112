"""The catalogue's use cases: show, list, delete, namespaces, repositories, permissions.

Documents come back as JSON text where they are stored as such, so listings are not re-encoded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sage_common.auth import Principal
from sage_common.errors import Conflict, Forbidden

from . import acl, cursor, service_builds, service_images, views
from . import service_access as access
from . import store_apps as apps
from .acl import Grant, Permission
from .models import ListQuery, NamespaceCreate, PermissionChange, RepositoryQuery
from .service_access import Policy
from .spec import AppSpec
from .states import State
from .store import Session, Store
from .store_catalogue import RepoFilter, Viewer


@dataclass
class Ecr:
    """What the use cases work with: the store, the access policy and the input limits."""

    store: Store
    policy: Policy = field(default_factory=Policy)
    max_body_bytes: int = 256 * 1024
    spec_max_depth: int = 32
    spec_max_nodes: int = 20_000
    public_url: str = ""


def search_text(spec: AppSpec) -> tuple[str, str, str]:
    name_words = spec.name + " " + spec.name.replace("-", " ").replace("_", " ").replace(".", " ")
    return name_words, " ".join(spec.keywords), spec.description


async def get_app(ecr: Ecr, who: Principal | None, ns: str, name: str, version: str) -> str:
    async with ecr.store.read() as tx:
        app = await access.app_for(tx, who, ecr.policy, ns, name, version, Permission.READ)
        return await tx.app_document(app.id)


async def delete_app(
    ecr: Ecr, who: Principal | None, ns: str, name: str, version: str
) -> dict[str, int]:
    """Delete a version (cancelling its build, its images to follow); a frozen one only by an
    administrator."""
    async with ecr.store.transaction() as tx:
        app = await access.app_for(
            tx, who, ecr.policy, ns, name, version, Permission.FULL_CONTROL, for_update=True
        )
        assert who is not None
        if app.frozen and not who.is_admin:
            raise Forbidden(f"{app.ident} is frozen: only an administrator may delete it")
        await service_builds.cancel_build(tx, app, who.username)
        await service_images.forget(tx, app, who.username)
        await tx.delete_app(app.id)
    return {"deleted": 1}


def _owner(who: Principal | None, owner: str | None) -> str | None:
    """`owner=true` (SAGE's form) is the caller ("" for nobody when anonymous)."""
    if owner is not None and owner.lower() in ("true", "1", "yes"):
        return who.username if who else ""
    return owner


async def set_frozen(
    ecr: Ecr, who: Principal | None, ns: str, name: str, version: str, frozen: bool
) -> dict[str, int]:
    """Freeze or unfreeze a version (administrators only, as in SAGE); `modified` 0 or 1."""
    async with ecr.store.transaction() as tx:
        app = await access.app_for(
            tx, who, ecr.policy, ns, name, version, Permission.READ, for_update=True
        )
        if who is None or not who.is_admin:
            raise access.deny(who, "only administrators may freeze or unfreeze a version")
        if app.frozen == frozen:
            return {"modified": 0}
        await tx.update_app(app.id, frozen=frozen)
        await service_builds.refresh_doc(tx, app.id)
    return {"modified": 1}


def app_filter(
    who: Principal | None, query: ListQuery, ns: str | None = None, name: str | None = None
) -> apps.AppFilter:
    """The listing's filters as the store takes them, from the query string and the route."""
    gpus: dict[str, list[str]] = {"true": ["required", "optional"], "false": ["optional", "none"]}
    return apps.AppFilter(
        namespace=ns or query.namespace,
        name=name,
        owner=_owner(who, query.owner),
        public=query.public,
        nopublic=query.nopublic,
        shared=query.shared,
        state=State.PUBLISHED.value
        if query.published
        else (query.state.value if query.state else None),
        architecture=query.architecture,
        gpu=gpus.get(query.gpu, [query.gpu]) if query.gpu else None,
        q=(query.q or "").strip() or None,
    )


async def list_apps(
    ecr: Ecr,
    who: Principal | None,
    query: ListQuery,
    ns: str | None = None,
    name: str | None = None,
) -> bytes:
    """One page of the apps the caller may read, as `{"pagination": ..., "data": [...]}` JSON."""
    flt = app_filter(who, query, ns, name)
    mark = cursor.fingerprint({**vars(flt), "viewer": who.username if who else None})
    after = cursor.decode(query.continue_, mark, 3) if query.continue_ else None
    async with ecr.store.read() as tx:
        page = await tx.list_apps(access.viewer(who, ecr.policy), flt, after, query.limit)
    token = json.dumps(cursor.encode(page.more_after, mark) if page.more_after else None)
    return b'{"pagination":{"continuationToken":%b},"data":[%b]}' % (token.encode(), page.data)


# ---- namespaces and repositories


async def list_namespaces(ecr: Ecr, who: Principal | None) -> dict[str, Any]:
    async with ecr.store.read() as tx:
        found = await tx.list_namespaces(access.viewer(who, ecr.policy))
    return {"data": [views.namespace_view(n) for n in found]}


async def create_namespace(
    ecr: Ecr, who: Principal | None, body: NamespaceCreate
) -> dict[str, Any]:
    who = access.require_submitter(who)
    async with ecr.store.transaction() as tx:
        await service_images.require_claimable(tx, body.id)
        if not await tx.create_namespace(body.id, who.username):
            raise Conflict(f"namespace {body.id} already exists")
        namespace = await tx.get_namespace(body.id)
    assert namespace is not None
    return views.namespace_view(namespace)


async def get_namespace(ecr: Ecr, who: Principal | None, ns: str) -> dict[str, Any]:
    async with ecr.store.read() as tx:
        namespace = await access.namespace_for(tx, who, ecr.policy, ns, Permission.READ)
        repos = await tx.list_repositories(ns, access.viewer(who, ecr.policy))
    return {
        **views.namespace_view(namespace),
        "repositories": [views.repository_view(r) for r in repos],
    }


async def delete_namespace(ecr: Ecr, who: Principal | None, ns: str) -> dict[str, int]:
    async with ecr.store.transaction() as tx:
        await access.namespace_for(tx, who, ecr.policy, ns, Permission.FULL_CONTROL)
        if count := await tx.count_repositories(ns):
            raise Conflict(f"namespace {ns} is not empty: it holds {count} repositories")
        await tx.delete_namespace(ns)
    return {"deleted": 1}


async def list_repositories(
    ecr: Ecr, who: Principal | None, query: RepositoryQuery, ns: str | None = None
) -> dict[str, Any]:
    """Repositories the caller may read, filtered as SAGE filters them; `view=permissions` adds
    each one's `permissions` (see `_visible_grants`)."""
    flt = RepoFilter(
        owner=_owner(who, query.owner),
        public=query.public,
        nopublic=query.nopublic,
        shared=query.shared,
    )
    async with ecr.store.read() as tx:
        repos = await tx.list_repositories(
            ns or query.namespace, access.viewer(who, ecr.policy), flt
        )
        data = [views.repository_view(r) for r in repos]
        if query.view == "permissions" and repos:
            names = [f"{r.namespace}/{r.name}" for r in repos]
            repo_grants = await tx.grants_of("repository", names)
            ns_grants = await tx.grants_of("namespace", [r.namespace for r in repos])
            for item, name in zip(data, names, strict=True):
                shown = _visible_grants(who, ns_grants[item["namespace"]], repo_grants[name])
                item["permissions"] = [views.grant_view(g, "repository", name) for g in shown]
    return {"data": data}


def _visible_grants(
    who: Principal | None, ns_grants: list[Grant], repo_grants: list[Grant]
) -> list[Grant]:
    """A repository's grants as `GET /api/permissions/{ns}/{name}` would show them to the
    caller; to one who may not read that list, only the AllUsers grant (public knowledge)."""
    if Permission.READ_ACP in acl.on_repository(who, ns_grants, repo_grants):
        return repo_grants
    return [g for g in repo_grants if acl.is_public([g])]


async def get_repository(ecr: Ecr, who: Principal | None, ns: str, name: str) -> str:
    async with ecr.store.read() as tx:
        repo = await access.repository_for(tx, who, ecr.policy, ns, name, Permission.READ)
        sees_all = Viewer(None, everything=True)
        page = await tx.list_apps(sees_all, apps.AppFilter(namespace=ns, name=name), None, 10_000)
    head = json.dumps(views.repository_view(repo))[:-1]
    return f'{head},"versions":[{page.data.decode()}]}}'


async def delete_repository(ecr: Ecr, who: Principal | None, ns: str, name: str) -> dict[str, int]:
    async with ecr.store.transaction() as tx:
        await access.repository_for(tx, who, ecr.policy, ns, name, Permission.FULL_CONTROL)
        if count := await tx.count_apps(ns, name):
            raise Conflict(f"repository {ns}/{name} is not empty: it holds {count} versions")
        await tx.delete_repository(ns, name)
    return {"deleted": 1}


# ---- permissions


async def _acl_target(
    tx: Session, ecr: Ecr, who: Principal | None, ns: str, name: str | None, need: Permission
) -> tuple[str, str, str]:
    """(resource type, resource name, owner) of the ACL the caller may use with `need`."""
    if name is None:
        namespace = await access.namespace_for(tx, who, ecr.policy, ns, need)
        return "namespace", ns, namespace.owner
    repo = await access.repository_for(tx, who, ecr.policy, ns, name, need)
    return "repository", f"{ns}/{name}", repo.owner


async def get_permissions(
    ecr: Ecr, who: Principal | None, ns: str, name: str | None
) -> list[dict[str, Any]]:
    async with ecr.store.read() as tx:
        kind, resource, _ = await _acl_target(tx, ecr, who, ns, name, Permission.READ_ACP)
        grants = await tx.grants(kind, resource)
    return [views.grant_view(g, kind, resource) for g in grants]


async def change_permissions(
    ecr: Ecr, who: Principal | None, ns: str, name: str | None, change: PermissionChange
) -> dict[str, int]:
    async with ecr.store.transaction() as tx:
        kind, resource, owner = await _acl_target(tx, ecr, who, ns, name, Permission.WRITE_ACP)
        if change.operation == "add":
            return {"added": await tx.add_grant(kind, resource, change.grant())}
        permission = change.permission.value if change.permission else None
        deleted = await tx.delete_grants(
            kind, resource, owner, change.granteeType, change.grantee, permission
        )
        return {"deleted": deleted}
