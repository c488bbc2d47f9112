"""The asyncpg pool and the plain-SQL migrations of one service schema.

Migrations are files `NNNN_name.sql`, applied in order, each in its own transaction, recorded in
`<schema>.schema_migrations`. A session-level advisory lock keyed by the schema serialises replicas
that start at once: the second waits, then finds nothing left to do.
"""

from __future__ import annotations

import json
import logging
import re
from importlib import resources
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)

COMMON_MIGRATIONS = Path(str(resources.files("sage_common") / "migrations"))
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_FILE_RE = re.compile(r"^(\d{4})_[\w-]+\.sql$")


def _check_schema(schema: str) -> None:
    if not _SCHEMA_RE.match(schema):
        raise ValueError(f"not a valid schema name: {schema!r}")


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(typ, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A reset that sends nothing: asyncpg has already rolled back any open transaction."""


async def create_pool(
    dsn: str,
    schema: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    reset_sessions: bool = True,
) -> asyncpg.Pool:
    """A pool whose connections see `schema` first and decode json/jsonb to Python values.

    `reset_sessions=False` skips resetting a connection given back (advisory locks, settings,
    LISTENs: a round trip per use), for code that releases what it takes in `finally`.
    """
    _check_schema(schema)
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=None if reset_sessions else _keep_session,
        server_settings={
            "search_path": f"{schema},public",
            "application_name": f"sage-{schema}",
            # Our queries are short and page-sized: starting parallel workers costs more than
            # it saves (a 100,000-version listing page: 127 ms with workers, 8 ms without).
            "max_parallel_workers_per_gather": "0",
        },
        command_timeout=60,
    )
    assert pool is not None
    return pool


async def migrate(pool: asyncpg.Pool, schema: str, *directories: Path) -> list[str]:
    """Apply what is new in `directories` (common migrations first) to `schema`; return what ran."""
    _check_schema(schema)
    dirs = [("common", COMMON_MIGRATIONS), *(("service", d) for d in directories)]
    applied: list[str] = []
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"sage-migrate:{schema}")
        try:
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            await conn.execute(
                f"""CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
                        component text NOT NULL,
                        version text NOT NULL,
                        applied_at timestamptz NOT NULL DEFAULT now(),
                        PRIMARY KEY (component, version))"""
            )
            rows = await conn.fetch(f"SELECT component, version FROM {schema}.schema_migrations")
            done = {(r["component"], r["version"]) for r in rows}
            for component, directory in dirs:
                for path in sorted(directory.glob("*.sql")):
                    version = path.stem
                    if not _FILE_RE.match(path.name) or (component, version) in done:
                        continue
                    async with conn.transaction():
                        await conn.execute(f"SET LOCAL search_path TO {schema}, public")
                        await conn.execute(path.read_text())
                        await conn.execute(
                            f"INSERT INTO {schema}.schema_migrations (component, version) VALUES ($1, $2)",
                            component,
                            version,
                        )
                    applied.append(f"{component}:{version}")
                    log.info("migration applied", extra={"schema": schema, "migration": version})
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", f"sage-migrate:{schema}")
    return applied


async def ping(pool: asyncpg.Pool) -> None:
    """Raise if the database does not answer a trivial query within a short time."""
    async with pool.acquire(timeout=2) as conn:
        await conn.fetchval("SELECT 1", timeout=2)
