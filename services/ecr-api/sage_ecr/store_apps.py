"""SQL for app versions and their stored documents (served with `public`: `store_listing`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .records import App
from .store_catalogue import OnConnection

_APP = """a.id, a.namespace, a.name, a.version, a.version_key, a.owner, a.spec, a.state,
    a.frozen, a.build_number, a.build_id, a.reviewer, a.review_comment, a.reviewed_at,
    a.created_at, a.updated_at"""
_SEARCH = """setweight(to_tsvector('english', $1), 'A')
    || setweight(to_tsvector('english', $2), 'A')
    || setweight(to_tsvector('english', $3), 'B')"""


@dataclass
class AppFilter:
    namespace: str | None = None
    name: str | None = None
    owner: str | None = None
    public: bool = False
    nopublic: bool = False
    shared: bool = False
    state: str | None = None
    architecture: str | None = None
    gpu: list[str] | None = None
    q: str | None = None


class AppsSql(OnConnection):
    """App versions and their stored documents."""

    async def insert_app(
        self,
        *,
        namespace: str,
        name: str,
        version: str,
        version_key: str,
        owner: str,
        spec: dict[str, Any],
        architectures: list[str],
        gpu: str,
        state: str,
        search: tuple[str, str, str],
    ) -> App | None:
        """The new version's row, or None when that version already exists."""
        row = await self.conn.fetchrow(
            f"""INSERT INTO apps (namespace, name, version, version_key, owner, spec,
                                  architectures, gpu, state, search, doc)
                VALUES ($4, $5, $6, $7, $8, $9, $10, $11, $12, {_SEARCH}, '{{}}')
                ON CONFLICT DO NOTHING
                RETURNING {_APP.replace("a.", "")}""",
            *search,
            namespace,
            name,
            version,
            version_key,
            owner,
            spec,
            architectures,
            gpu,
            state,
        )
        return App(**row) if row else None

    async def replace_spec(
        self,
        app_id: int,
        *,
        spec: dict[str, Any],
        architectures: list[str],
        gpu: str,
        search: tuple[str, str, str],
    ) -> None:
        """A resubmitted version's description (`force=true`); the pipeline columns are left alone."""
        await self.conn.execute(
            f"""UPDATE apps SET search = {_SEARCH}, spec = $4, architectures = $5, gpu = $6,
                                updated_at = now()
                WHERE id = $7""",
            *search,
            spec,
            architectures,
            gpu,
            app_id,
        )

    async def get_app(
        self, namespace: str, name: str, version: str, *, for_update: bool = False
    ) -> App | None:
        lock = " FOR UPDATE" if for_update else ""
        row = await self.conn.fetchrow(
            f"""SELECT {_APP} FROM apps a
                WHERE a.namespace = $1 AND a.name = $2 AND a.version = $3{lock}""",
            namespace,
            name,
            version,
        )
        return App(**row) if row else None

    async def get_app_by_id(self, app_id: int, *, for_update: bool = False) -> App | None:
        lock = " FOR UPDATE" if for_update else ""
        row = await self.conn.fetchrow(f"SELECT {_APP} FROM apps a WHERE a.id = $1{lock}", app_id)
        return App(**row) if row else None

    async def update_app(self, app_id: int, **values: Any) -> None:
        """Set columns (names come from the service, never from a request) and touch `updated_at`."""
        assignments = ", ".join(f"{n} = ${i}" for i, n in enumerate(values, start=2))
        await self.conn.execute(
            f"UPDATE apps SET {assignments}, updated_at = now() WHERE id = $1",
            app_id,
            *values.values(),
        )

    async def save_doc(self, app_id: int, doc: dict[str, Any], doc_version: int) -> None:
        await self.conn.execute(
            "UPDATE apps SET doc = $2, doc_version = $3 WHERE id = $1", app_id, doc, doc_version
        )

    async def lock_stale_docs(self, doc_version: int, limit: int) -> list[int]:
        """Ids of up to `limit` versions whose document is older than `doc_version`, locked for this
        transaction; rows another replica is recomputing are skipped."""
        rows = await self.conn.fetch(
            """SELECT id FROM apps WHERE doc_version < $1 ORDER BY id LIMIT $2
               FOR UPDATE SKIP LOCKED""",
            doc_version,
            limit,
        )
        return [r["id"] for r in rows]

    async def delete_app(self, app_id: int) -> None:
        await self.conn.execute("DELETE FROM apps WHERE id = $1", app_id)
