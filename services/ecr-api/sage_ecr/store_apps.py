"""SQL for app versions, their builds and state history (the listing: `store_listing`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from .store import public_repository

Conn: TypeAlias = asyncpg.Connection

_APP = """a.id, a.namespace, a.name, a.version, a.version_key, a.owner, a.spec, a.state,
    a.frozen, a.build_number, a.build_id, a.reviewer, a.review_comment, a.reviewed_at,
    a.created_at, a.updated_at"""
_SEARCH = """setweight(to_tsvector('english', $1), 'A')
    || setweight(to_tsvector('english', $2), 'A')
    || setweight(to_tsvector('english', $3), 'B')"""
# The stored document plus `public`, as JSON text (never decoded into Python on the way out);
# `doc` is `json`, not `jsonb`, so its text (and key order) is kept as written.
_PUBLIC = public_repository("a.namespace", "a.name")
_DOC = f"""(left(a.doc::text, -1) || ', "public": '
    || CASE WHEN {_PUBLIC} THEN 'true' ELSE 'false' END || '}}')"""


@dataclass
class Viewer:
    """The caller as the listing SQL needs it."""

    username: str | None
    groups: list[str] = field(default_factory=list)
    everything: bool = False


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


async def insert_app(
    conn: Conn,
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
) -> dict[str, Any] | None:
    """The new version's row, or None when that version already exists."""
    row = await conn.fetchrow(
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
    return dict(row) if row else None


async def replace_spec(
    conn: Conn,
    app_id: int,
    *,
    spec: dict[str, Any],
    architectures: list[str],
    gpu: str,
    search: tuple[str, str, str],
) -> None:
    """A resubmitted version's description (`force=true`); the pipeline columns are left alone."""
    await conn.execute(
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
    conn: Conn, namespace: str, name: str, version: str, *, for_update: bool = False
) -> dict[str, Any] | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(
        f"""SELECT {_APP} FROM apps a
            WHERE a.namespace = $1 AND a.name = $2 AND a.version = $3{lock}""",
        namespace,
        name,
        version,
    )
    return dict(row) if row else None


async def get_app_by_id(
    conn: Conn, app_id: int, *, for_update: bool = False
) -> dict[str, Any] | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(f"SELECT {_APP} FROM apps a WHERE a.id = $1{lock}", app_id)
    return dict(row) if row else None


async def app_document(conn: Conn, app_id: int) -> str:
    """The stored document with `public` added, as JSON text."""
    text: str = await conn.fetchval(
        f"""SELECT {_DOC}
            FROM apps a WHERE a.id = $1""",
        app_id,
    )
    return text


async def update_app(conn: Conn, app_id: int, **values: Any) -> None:
    """Set columns (names come from the service, never from a request) and touch `updated_at`."""
    names = list(values)
    assignments = ", ".join(f"{n} = ${i}" for i, n in enumerate(names, start=2))
    await conn.execute(
        f"UPDATE apps SET {assignments}, updated_at = now() WHERE id = $1", app_id, *values.values()
    )


async def save_doc(conn: Conn, app_id: int, doc: dict[str, Any], doc_version: int) -> None:
    await conn.execute(
        "UPDATE apps SET doc = $2, doc_version = $3 WHERE id = $1", app_id, doc, doc_version
    )


async def lock_stale_docs(conn: Conn, doc_version: int, limit: int) -> list[int]:
    """Ids of up to `limit` versions whose document is older than `doc_version`, locked for this
    transaction; rows another replica is recomputing are skipped."""
    rows = await conn.fetch(
        """SELECT id FROM apps WHERE doc_version < $1 ORDER BY id LIMIT $2
           FOR UPDATE SKIP LOCKED""",
        doc_version,
        limit,
    )
    return [r["id"] for r in rows]


async def delete_app(conn: Conn, app_id: int) -> None:
    await conn.execute("DELETE FROM apps WHERE id = $1", app_id)


# ---- builds


async def insert_build(
    conn: Conn, app_id: int, build_number: int, requested_by: str
) -> dict[str, Any]:
    row = await conn.fetchrow(
        """INSERT INTO builds (build_id, app_id, build_number, requested_by) VALUES ($1, $2, $3, $4)
           RETURNING *""",
        uuid.uuid4(),
        app_id,
        build_number,
        requested_by,
    )
    assert row is not None
    return dict(row)


async def get_build(conn: Conn, build_id: uuid.UUID | None) -> dict[str, Any] | None:
    if build_id is None:
        return None
    row = await conn.fetchrow("SELECT * FROM builds WHERE build_id = $1", build_id)
    return dict(row) if row else None


async def get_build_by_number(conn: Conn, app_id: int, build_number: int) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        "SELECT * FROM builds WHERE app_id = $1 AND build_number = $2", app_id, build_number
    )
    return dict(row) if row else None


async def record_started(
    conn: Conn, build_id: uuid.UUID, at: datetime, event_id: str, log_location: str | None = None
) -> bool:
    """Note that the build started, and where its live log is; False when that was known."""
    status = await conn.execute(
        """UPDATE builds SET started_at = $2, started_event = $3, log_location = $4
           WHERE build_id = $1 AND started_event IS NULL""",
        build_id,
        at,
        event_id,
        log_location,
    )
    return status.endswith(" 1")


async def record_done(
    conn: Conn, build_id: uuid.UUID, status: str, data: dict[str, Any], event_id: str
) -> bool:
    result = await conn.execute(
        """UPDATE builds SET status = $2, done = $3, done_event = $4, finished_at = now()
           WHERE build_id = $1 AND done_event IS NULL""",
        build_id,
        status,
        data,
        event_id,
    )
    return result.endswith(" 1")


async def record_profile(
    conn: Conn, build_id: uuid.UUID, status: str, data: dict[str, Any], event_id: str
) -> bool:
    result = await conn.execute(
        """UPDATE builds
           SET profile_status = $2, profile = $3, profile_event = $4, profiled_at = now()
           WHERE build_id = $1 AND profile_event IS NULL""",
        build_id,
        status,
        data,
        event_id,
    )
    return result.endswith(" 1")


# ---- history


async def add_history(
    conn: Conn,
    app_id: int,
    source: str | None,
    target: str,
    cause: str,
    *,
    event_id: str | None = None,
    build_number: int | None = None,
    actor: str | None = None,
) -> None:
    await conn.execute(
        """INSERT INTO app_history
               (app_id, from_state, to_state, cause, event_id, build_number, actor)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        app_id,
        source,
        target,
        cause,
        event_id,
        build_number,
        actor,
    )


async def history(conn: Conn, app_id: int) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT * FROM app_history WHERE app_id = $1 ORDER BY id", app_id)
    return [dict(r) for r in rows]
