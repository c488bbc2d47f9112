"""Migrations: applied in order once, recorded, and safe when two replicas start together."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from sage_common import db


def write_migrations(directory: Path, *sqls: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for i, sql in enumerate(sqls, start=1):
        (directory / f"{i:04d}_step.sql").write_text(sql)
    return directory


@pytest.fixture
async def pool(database_url: str, unique: str) -> asyncpg.Pool:
    pool = await db.create_pool(database_url, f"mig_{unique}", max_size=4)
    yield pool
    await pool.close()


async def test_migrations_apply_in_order_and_twice_is_a_no_op(pool, tmp_path, unique):
    schema = f"mig_{unique}"
    steps = write_migrations(
        tmp_path / "m",
        "CREATE TABLE things (id int PRIMARY KEY, note text);",
        "INSERT INTO things VALUES (1, 'first');",
        "ALTER TABLE things ADD COLUMN size int NOT NULL DEFAULT 0;",
    )
    first = await db.migrate(pool, schema, steps)
    second = await db.migrate(pool, schema, steps)
    assert [m for m in first if m.startswith("service:")] == [
        "service:0001_step",
        "service:0002_step",
        "service:0003_step",
    ]
    assert "common:0001_bus" in first
    assert second == []
    rows = await pool.fetch(f"SELECT id, note, size FROM {schema}.things")
    assert [tuple(r) for r in rows] == [(1, "first", 0)]  # the INSERT ran once


async def test_a_new_file_is_applied_alone(pool, tmp_path, unique):
    schema = f"mig_{unique}"
    steps = write_migrations(tmp_path / "m", "CREATE TABLE t (id int);")
    await db.migrate(pool, schema, steps)
    (steps / "0002_more.sql").write_text("INSERT INTO t VALUES (7);")
    assert await db.migrate(pool, schema, steps) == ["service:0002_more"]
    assert await pool.fetchval(f"SELECT count(*) FROM {schema}.t") == 1


async def test_two_replicas_starting_at_once_do_not_collide(database_url, tmp_path, unique):
    schema = f"mig_{unique}"
    # pg_sleep makes the first migration slow, so the second replica arrives while it runs
    steps = write_migrations(
        tmp_path / "m",
        "SELECT pg_sleep(0.5); CREATE TABLE once (id int);",
        "INSERT INTO once VALUES (1);",
    )
    pools = [await db.create_pool(database_url, schema, max_size=2) for _ in range(2)]
    try:
        results = await asyncio.gather(*(db.migrate(p, schema, steps) for p in pools))
        ran = sorted(len([m for m in r if m.startswith("service:")]) for r in results)
        assert ran == [0, 2]  # one replica did everything, the other found nothing to do
        assert await pools[0].fetchval(f"SELECT count(*) FROM {schema}.once") == 1
    finally:
        for p in pools:
            await p.close()


async def test_a_failing_migration_leaves_nothing_half_done(pool, tmp_path, unique):
    schema = f"mig_{unique}"
    steps = write_migrations(
        tmp_path / "m",
        "CREATE TABLE ok (id int);",
        "CREATE TABLE broken (id int); INSERT INTO nowhere VALUES (1);",
    )
    with pytest.raises(asyncpg.UndefinedTableError):
        await db.migrate(pool, schema, steps)
    assert await pool.fetchval(f"SELECT to_regclass('{schema}.broken')") is None
    versions = await pool.fetch(f"SELECT version FROM {schema}.schema_migrations")
    assert "0002_step" not in {r["version"] for r in versions}
    (steps / "0002_step.sql").write_text("CREATE TABLE broken (id int);")
    assert await db.migrate(pool, schema, steps) == ["service:0002_step"]


async def test_schema_names_are_validated(database_url):
    with pytest.raises(ValueError):
        await db.create_pool(database_url, "bad; DROP SCHEMA public")
