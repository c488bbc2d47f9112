"""The in-memory store's tables, and what `store_catalogue.py` does in SQL (namespaces,
repositories, grants, the access rule) on lists; `store_memory.py` says what the fake keeps."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sage_common.events import CloudEvent

from .acl import ALL_USERS, GIVEN_BY, Grant, Permission
from .records import App, Build, Deletion, HistoryEntry, MetaFileRow, Namespace, Repository
from .store_catalogue import RepoFilter, Viewer

READERS = GIVEN_BY[Permission.READ]
GrantRow = tuple[str, str, str, str, str]  # resource type and name, grantee type, grantee, perm


@dataclass
class Tables:
    """Every row of the in-memory store; a transaction works on a copy, kept when it commits."""

    namespaces: dict[str, Namespace] = field(default_factory=dict)
    repositories: dict[tuple[str, str], Repository] = field(default_factory=dict)
    grants: list[GrantRow] = field(default_factory=list)
    apps: dict[int, App] = field(default_factory=dict)
    listed: dict[int, dict[str, Any]] = field(default_factory=dict)  # architectures, gpu, search
    docs: dict[int, tuple[dict[str, Any], int]] = field(default_factory=dict)
    builds: dict[uuid.UUID, Build] = field(default_factory=dict)
    history: list[HistoryEntry] = field(default_factory=list)
    deletions: dict[uuid.UUID, Deletion] = field(default_factory=dict)
    meta: dict[int, list[MetaFileRow]] = field(default_factory=dict)
    outbox: list[CloudEvent] = field(default_factory=list)


def now() -> datetime:
    return datetime.now(UTC)


class MemoryCatalogue:
    """Namespaces, repositories and grants on `Tables` (`store.Session` says what each does)."""

    def __init__(self, tables: Tables, ids: itertools.count[int]) -> None:
        self.t = tables
        self.ids = ids

    # ---- grants and the access rule

    def _names(self, row: GrantRow, viewer: Viewer, *, all_users: bool = True) -> bool:
        _, _, kind, grantee, _ = row
        if kind == "USER":
            return grantee == viewer.username
        return (all_users and grantee == ALL_USERS) or grantee in viewer.groups

    def _granted(
        self, kind: str, name: str, viewer: Viewer, *, readers: bool = True, all_users: bool = True
    ) -> bool:
        return any(
            r[0] == kind
            and r[1] == name
            and (not readers or r[4] in READERS)
            and self._names(r, viewer, all_users=all_users)
            for r in self.t.grants
        )

    def _public(self, ns: str, name: str) -> bool:
        return any(
            r[:4] == ("repository", f"{ns}/{name}", "GROUP", ALL_USERS) for r in self.t.grants
        )

    def _readable(self, ns: str, name: str, viewer: Viewer, via_public: bool = True) -> bool:
        return (
            viewer.everything
            or self._granted("namespace", ns, viewer, all_users=False)
            or self._granted("repository", f"{ns}/{name}", viewer, all_users=via_public)
        )

    def _shared(self, ns: str, name: str, owner: str, viewer: Viewer) -> bool:
        """Someone else's, with any grant to the viewer or their groups (AllUsers aside)."""

        def to_viewer(kind: str, resource: str) -> bool:
            return self._granted(kind, resource, viewer, readers=False, all_users=False)

        return owner != viewer.username and (
            to_viewer("namespace", ns) or to_viewer("repository", f"{ns}/{name}")
        )

    async def grants(self, resource_type: str, resource_name: str) -> list[Grant]:
        rows = sorted(r for r in self.t.grants if r[:2] == (resource_type, resource_name))
        return [
            Grant.model_validate({"grantee_type": t, "grantee": g, "permission": p})
            for _, _, t, g, p in rows
        ]

    async def grants_of(self, resource_type: str, names: list[str]) -> dict[str, list[Grant]]:
        return {name: await self.grants(resource_type, name) for name in names}

    async def add_grant(self, resource_type: str, resource_name: str, grant: Grant) -> int:
        permission = Permission(grant.permission).value
        row = (resource_type, resource_name, grant.grantee_type, grant.grantee, permission)
        if row in self.t.grants:
            return 0
        self.t.grants.append(row)
        return 1

    async def delete_grants(
        self,
        resource_type: str,
        resource_name: str,
        owner: str,
        grantee_type: str | None,
        grantee: str | None,
        permission: str | None,
    ) -> int:
        def goes(r: GrantRow) -> bool:
            return (
                r[:2] == (resource_type, resource_name)
                and grantee_type in (None, r[2])
                and grantee in (None, r[3])
                and permission in (None, r[4])
                and r[2:] != ("USER", owner, "FULL_CONTROL")
            )

        kept = [r for r in self.t.grants if not goes(r)]
        deleted, self.t.grants[:] = len(self.t.grants) - len(kept), kept
        return deleted

    def _owner_grant(self, kind: str, name: str, owner: str) -> None:
        self.t.grants.append((kind, name, "USER", owner, "FULL_CONTROL"))

    def _drop_grants(self, kind: str, name: str) -> None:
        self.t.grants[:] = [r for r in self.t.grants if r[:2] != (kind, name)]

    # ---- namespaces and repositories

    async def get_namespace(self, name: str) -> Namespace | None:
        return self.t.namespaces.get(name)

    async def create_namespace(self, name: str, owner: str) -> bool:
        if name in self.t.namespaces:
            return False
        self.t.namespaces[name] = Namespace(name, owner, now())
        self._owner_grant("namespace", name, owner)
        return True

    async def delete_namespace(self, name: str) -> None:
        self._drop_grants("namespace", name)
        self.t.namespaces.pop(name, None)

    async def count_repositories(self, namespace: str) -> int:
        return sum(1 for ns, _ in self.t.repositories if ns == namespace)

    async def list_namespaces(self, viewer: Viewer) -> list[Namespace]:
        def visible(ns: str) -> bool:
            return self._granted("namespace", ns, viewer) or any(
                self._granted("repository", f"{ns}/{name}", viewer)
                for n, name in self.t.repositories
                if n == ns
            )

        found = [
            n for name, n in sorted(self.t.namespaces.items()) if viewer.everything or visible(name)
        ]
        return [Namespace(n.name, n.owner) for n in found]

    async def get_repository(self, namespace: str, name: str) -> Repository | None:
        repo = self.t.repositories.get((namespace, name))
        return replace(repo, public=self._public(namespace, name)) if repo else None

    async def create_repository(self, namespace: str, name: str, owner: str) -> bool:
        if (namespace, name) in self.t.repositories:
            return False
        self.t.repositories[namespace, name] = Repository(namespace, name, owner, False, now())
        self._owner_grant("repository", f"{namespace}/{name}", owner)
        return True

    async def delete_repository(self, namespace: str, name: str) -> None:
        self._drop_grants("repository", f"{namespace}/{name}")
        self.t.repositories.pop((namespace, name), None)

    async def count_apps(self, namespace: str, name: str) -> int:
        return sum(1 for a in self.t.apps.values() if (a.namespace, a.name) == (namespace, name))

    async def list_repositories(
        self, namespace: str | None, viewer: Viewer, flt: RepoFilter | None = None
    ) -> list[Repository]:
        flt = flt or RepoFilter()
        found = []
        for (ns, name), repo in sorted(self.t.repositories.items()):
            public = self._public(ns, name)
            if (
                namespace in (None, ns)
                and self._readable(ns, name, viewer, via_public=not flt.nopublic)
                and (public or not flt.public)
                and (not flt.shared or self._shared(ns, name, repo.owner, viewer))
                and flt.owner in (None, repo.owner)
            ):
                found.append(Repository(ns, name, repo.owner, public))
        return found
