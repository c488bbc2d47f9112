"""SQL for namespaces, repositories and their access control lists; the access rule's SQL
fragments are shared with the app listing (`store_listing`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

from .acl import GIVEN_BY, Grant, Permission
from .records import Namespace, Repository

READERS = GIVEN_BY[Permission.READ]

# Whether the grant row `p` names the viewer ($u: username or NULL, $g: groups).
_NAMES_VIEWER = """((p.grantee_type = 'USER' AND p.grantee = {u})
    OR (p.grantee_type = 'GROUP' AND (p.grantee = 'AllUsers' OR p.grantee = ANY({g}))))"""
# The same without AllUsers: grants to the viewer themselves or to their groups.
_NAMES_VIEWER_ONLY = """((p.grantee_type = 'USER' AND p.grantee = {u})
    OR (p.grantee_type = 'GROUP' AND p.grantee = ANY({g})))"""


def _granted(
    resource_type: str, names: str, permissions: list[str] | None = None, *, all_users: bool = True
) -> str:
    """SQL: the names of the resources of `resource_type` with a grant that `names` the viewer (and
    gives one of `permissions`; without AllUsers' when `all_users` is False), as an uncorrelated
    subquery: Postgres hashes it once per query instead of probing the grants for every row."""
    given = f" AND p.permission = ANY('{{{','.join(permissions)}}}'::text[])" if permissions else ""
    public = "" if all_users else " AND NOT (p.grantee_type = 'GROUP' AND p.grantee = 'AllUsers')"
    return f"""(SELECT p.resource_name FROM permissions p
        WHERE p.resource_type = '{resource_type}'{given}{public} AND {names})"""


def readable_repository(
    namespace: str, name: str, u: str, g: str, everything: str, *, via_public: bool = True
) -> str:
    """SQL: the viewer may read the repository `namespace`/`name` (SQL expressions); with
    `via_public=False` only through a grant to them or their groups (SAGE's `nopublic`).
    A namespace's grants apply to its repositories, but AllUsers on a namespace does not."""
    names = (_NAMES_VIEWER if via_public else _NAMES_VIEWER_ONLY).format(u=u, g=g)
    return f"""({everything}
        OR {namespace} IN {_granted("namespace", names, READERS, all_users=False)}
        OR ({namespace} || '/' || {name}) IN {_granted("repository", names, READERS)})"""


def shared_repository(namespace: str, name: str, owner: str, u: str, g: str) -> str:
    """SQL: someone else owns the repository and grants the viewer (or a group of theirs)
    something on it or on its namespace (SAGE's `shared`)."""
    names = _NAMES_VIEWER_ONLY.format(u=u, g=g)
    return f"""({owner} IS DISTINCT FROM {u} AND (
        {namespace} IN {_granted("namespace", names)}
        OR ({namespace} || '/' || {name}) IN {_granted("repository", names)}))"""


@dataclass
class Viewer:
    """The caller as the listing SQL needs it."""

    username: str | None
    groups: list[str] = field(default_factory=list)
    everything: bool = False


@dataclass
class RepoFilter:
    """SAGE's listing filters (`GET /api/repositories`); see docs/ecr.md."""

    owner: str | None = None
    public: bool = False
    nopublic: bool = False
    shared: bool = False


def public_repository(namespace: str, name: str) -> str:
    """SQL: AllUsers may read the repository."""
    return f"""EXISTS (SELECT 1 FROM permissions p
        WHERE p.resource_type = 'repository' AND p.resource_name = {namespace} || '/' || {name}
          AND p.grantee_type = 'GROUP' AND p.grantee = 'AllUsers')"""


_PUBLIC_R = public_repository("r.namespace", "r.name")


class OnConnection:
    """A store's SQL, run on the connection (and in the transaction) its caller holds."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn


class CatalogueSql(OnConnection):
    """Namespaces, repositories and their grants."""

    # ---- namespaces

    async def get_namespace(self, name: str) -> Namespace | None:
        row = await self.conn.fetchrow(
            "SELECT name, owner, created_at FROM namespaces WHERE name = $1", name
        )
        return Namespace(**row) if row else None

    async def _give_owner(self, created: bool | None, kind: str, name: str, owner: str) -> bool:
        """Give the owner of a resource just `created` FULL_CONTROL; whether it was created."""
        if created:
            owns = Grant(grantee_type="USER", grantee=owner, permission=Permission.FULL_CONTROL)
            await self.add_grant(kind, name, owns)
        return bool(created)

    async def _delete_grants_of(self, kind: str, name: str) -> None:
        await self.conn.execute(
            "DELETE FROM permissions WHERE resource_type = $1 AND resource_name = $2", kind, name
        )

    async def create_namespace(self, name: str, owner: str) -> bool:
        """Claim `name` for `owner` with FULL_CONTROL; False when it is already taken."""
        created = await self.conn.fetchval(
            """INSERT INTO namespaces (name, owner) VALUES ($1, $2)
               ON CONFLICT DO NOTHING RETURNING true""",
            name,
            owner,
        )
        return await self._give_owner(created, "namespace", name, owner)

    async def delete_namespace(self, name: str) -> None:
        await self._delete_grants_of("namespace", name)
        await self.conn.execute("DELETE FROM namespaces WHERE name = $1", name)

    async def count_repositories(self, namespace: str) -> int:
        sql = "SELECT count(*) FROM repositories WHERE namespace = $1"
        return int(await self.conn.fetchval(sql, namespace))

    async def list_namespaces(self, viewer: Viewer) -> list[Namespace]:
        """Namespaces the viewer may read, directly or through one of their repositories."""
        rows = await self.conn.fetch(
            f"""SELECT n.name, n.owner FROM namespaces n
                WHERE $3 OR EXISTS (
                    SELECT 1 FROM permissions p
                    WHERE p.permission = ANY($4::text[])
                      AND ((p.resource_type = 'namespace' AND p.resource_name = n.name)
                        OR (p.resource_type = 'repository'
                            AND left(p.resource_name, length(n.name) + 1) = n.name || '/'))
                      AND {_NAMES_VIEWER.format(u="$1", g="$2")})
                ORDER BY n.name""",
            viewer.username,
            viewer.groups,
            viewer.everything,
            READERS,
        )
        return [Namespace(**r) for r in rows]

    # ---- repositories

    async def get_repository(self, namespace: str, name: str) -> Repository | None:
        row = await self.conn.fetchrow(
            f"""SELECT r.namespace, r.name, r.owner, r.created_at, {_PUBLIC_R} AS public
                FROM repositories r WHERE r.namespace = $1 AND r.name = $2""",
            namespace,
            name,
        )
        return Repository(**row) if row else None

    async def create_repository(self, namespace: str, name: str, owner: str) -> bool:
        created = await self.conn.fetchval(
            """INSERT INTO repositories (namespace, name, owner) VALUES ($1, $2, $3)
               ON CONFLICT DO NOTHING RETURNING true""",
            namespace,
            name,
            owner,
        )
        return await self._give_owner(created, "repository", f"{namespace}/{name}", owner)

    async def delete_repository(self, namespace: str, name: str) -> None:
        await self._delete_grants_of("repository", f"{namespace}/{name}")
        await self.conn.execute(
            "DELETE FROM repositories WHERE namespace = $1 AND name = $2", namespace, name
        )

    async def count_apps(self, namespace: str, name: str) -> int:
        sql = "SELECT count(*) FROM apps WHERE namespace = $1 AND name = $2"
        return int(await self.conn.fetchval(sql, namespace, name))

    async def list_repositories(
        self, namespace: str | None, viewer: Viewer, flt: RepoFilter | None = None
    ) -> list[Repository]:
        flt = flt or RepoFilter()
        args: list[Any] = [namespace, viewer.username, viewer.groups, viewer.everything]
        where = [
            "($1::text IS NULL OR r.namespace = $1)",
            readable_repository(
                "r.namespace", "r.name", "$2", "$3", "$4", via_public=not flt.nopublic
            ),
        ]
        if flt.public:
            where.append(_PUBLIC_R)
        if flt.shared:
            where.append(shared_repository("r.namespace", "r.name", "r.owner", "$2", "$3"))
        if flt.owner is not None:
            args.append(flt.owner)
            where.append(f"r.owner = ${len(args)}")
        rows = await self.conn.fetch(
            f"""SELECT r.namespace, r.name, r.owner, {_PUBLIC_R} AS public
                FROM repositories r
                WHERE {" AND ".join(where)}
                ORDER BY r.namespace, r.name""",
            *args,
        )
        return [Repository(**r) for r in rows]

    # ---- access control lists

    async def grants(self, resource_type: str, resource_name: str) -> list[Grant]:
        return (await self.grants_of(resource_type, [resource_name]))[resource_name]

    async def grants_of(self, resource_type: str, names: list[str]) -> dict[str, list[Grant]]:
        """The grants of each resource of `resource_type` named in `names`, in one query."""
        rows = await self.conn.fetch(
            """SELECT resource_name, grantee_type, grantee, permission FROM permissions
               WHERE resource_type = $1 AND resource_name = ANY($2::text[])
               ORDER BY resource_name, grantee_type, grantee, permission""",
            resource_type,
            names,
        )
        found: dict[str, list[Grant]] = {name: [] for name in names}
        for r in rows:
            found[r["resource_name"]].append(
                Grant(
                    grantee_type=r["grantee_type"], grantee=r["grantee"], permission=r["permission"]
                )
            )
        return found

    async def add_grant(self, resource_type: str, resource_name: str, grant: Grant) -> int:
        status = await self.conn.execute(
            """INSERT INTO permissions (resource_type, resource_name, grantee_type, grantee, permission)
               VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING""",
            resource_type,
            resource_name,
            grant.grantee_type,
            grant.grantee,
            grant.permission.value,
        )
        return int(status.split()[-1])

    async def delete_grants(
        self,
        resource_type: str,
        resource_name: str,
        owner: str,
        grantee_type: str | None,
        grantee: str | None,
        permission: str | None,
    ) -> int:
        """Delete the matching grants (all when no filter), never the owner's FULL_CONTROL."""
        status = await self.conn.execute(
            """DELETE FROM permissions
               WHERE resource_type = $1 AND resource_name = $2
                 AND ($3::text IS NULL OR grantee_type = $3)
                 AND ($4::text IS NULL OR grantee = $4)
                 AND ($5::text IS NULL OR permission = $5)
                 AND NOT (grantee_type = 'USER' AND grantee = $6 AND permission = 'FULL_CONTROL')""",
            resource_type,
            resource_name,
            grantee_type,
            grantee,
            permission,
            owner,
        )
        return int(status.split()[-1])
