"""Access checks on loaded resources: what the caller may do, and the 401/403/404 that follows.

A resource the caller may neither read nor use as asked is a 404, exactly as if it did not exist;
one they may read but not change is a 403 (401 when anonymous). Holding the permission asked for is
enough to see the resource, and READ_ACP shows it to whoever asks about its access control list.
"""

from __future__ import annotations

from dataclasses import dataclass

from sage_common.auth import Principal
from sage_common.errors import Forbidden, NotFound, Unauthorized

from . import acl
from .acl import Permission
from .records import App, Namespace, Repository
from .store import Session
from .store_catalogue import Viewer
from .views import app_id


@dataclass(frozen=True)
class Policy:
    """The settings the access rules depend on."""

    reviewers_group: str = "reviewers"
    builder_account: str = "service:builder"
    registry_access_clients: tuple[str, ...] = ("auth",)
    allow_self_review: bool = False  # may a reviewer approve or reject an app they submitted?


def _reveals(need: Permission) -> set[Permission]:
    """The permissions that let a caller know the resource exists when asking for `need`."""
    if need in (Permission.READ_ACP, Permission.WRITE_ACP):
        return {Permission.READ, Permission.READ_ACP, need}
    return {Permission.READ, need}


def deny(who: Principal | None, message: str) -> Exception:
    if who is None:
        return Unauthorized(f"{message}: send 'Authorization: sage <token>'")
    return Forbidden(message)


def require_submitter(who: Principal | None) -> Principal:
    """Only approved users (and admins) start builds or claim names."""
    if who is None:
        raise Unauthorized("this needs a token: send 'Authorization: sage <token>'")
    if not (who.is_approved or who.is_admin):
        raise Forbidden("your account is not approved yet: ask an administrator")
    return who


def viewer(who: Principal | None, policy: Policy) -> Viewer:
    if who is None:
        return Viewer(username=None)
    return Viewer(who.username, list(who.groups), acl.reads_everything(who, policy.reviewers_group))


async def on_repository(
    tx: Session, who: Principal | None, policy: Policy, namespace: str, name: str
) -> frozenset[Permission]:
    ns_grants = await tx.grants("namespace", namespace)
    repo_grants = await tx.grants("repository", f"{namespace}/{name}")
    granted = acl.on_repository(who, ns_grants, repo_grants)
    if acl.reads_everything(who, policy.reviewers_group):
        granted |= {Permission.READ}
    return granted


async def on_namespace(
    tx: Session, who: Principal | None, policy: Policy, namespace: str
) -> frozenset[Permission]:
    granted = acl.on_namespace(who, await tx.grants("namespace", namespace))
    if acl.reads_everything(who, policy.reviewers_group):
        granted |= {Permission.READ}
    return granted


async def app_for(
    tx: Session,
    who: Principal | None,
    policy: Policy,
    namespace: str,
    name: str,
    version: str,
    need: Permission,
    *,
    for_update: bool = False,
) -> App:
    """The app version if the caller holds `need` on its repository; 404 if they may not read it."""
    app = await tx.get_app(namespace, name, version, for_update=for_update)
    granted = await on_repository(tx, who, policy, namespace, name) if app else frozenset()
    if app is None or not granted & _reveals(need):
        raise NotFound(f"no app {app_id(namespace, name, version)}")
    if need not in granted:
        raise deny(who, f"you may not do this to {app_id(namespace, name, version)} (needs {need})")
    return app


async def repository_for(
    tx: Session, who: Principal | None, policy: Policy, namespace: str, name: str, need: Permission
) -> Repository:
    repo = await tx.get_repository(namespace, name)
    granted = await on_repository(tx, who, policy, namespace, name) if repo else frozenset()
    if repo is None or not granted & _reveals(need):
        raise NotFound(f"no repository {namespace}/{name}")
    if need not in granted:
        raise deny(who, f"you may not do this to {namespace}/{name} (needs {need})")
    return repo


async def namespace_for(
    tx: Session, who: Principal | None, policy: Policy, namespace: str, need: Permission
) -> Namespace:
    """The namespace if the caller holds `need`; also visible through a readable repository."""
    row = await tx.get_namespace(namespace)
    granted = await on_namespace(tx, who, policy, namespace) if row else frozenset()
    visible = bool(granted & _reveals(need))
    if row is not None and not visible:
        visible = bool(await tx.list_repositories(namespace, viewer(who, policy)))
    if row is None or not visible:
        raise NotFound(f"no namespace {namespace}")
    if need not in granted and need != Permission.READ:
        raise deny(who, f"you may not do this to namespace {namespace} (needs {need})")
    return row
