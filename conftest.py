"""Fixtures every test may use: a fresh Postgres database per test run, and ways to reach it.

The database server is the real one (`SAGE_TEST_PG`, default the local server); each run makes
its own database and drops it at the end, so runs never see each other's data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

ADMIN_DSN = os.environ.get("SAGE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("SAGE_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")


def _dsn_for(database: str) -> str:
    base, _, _ = ADMIN_DSN.rpartition("/")
    return f"{base}/{database}"


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    """A database made for this test run, dropped when it ends."""
    name = f"sage_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield _dsn_for(name)
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def amqp_url() -> str:
    return AMQP_URL


@pytest.fixture
def unique() -> str:
    """A short random suffix for names that must not collide between tests."""
    return uuid.uuid4().hex[:8]


# Shared fixtures, one module per area; each owner keeps its own module.
pytest_plugins = [
    "tests.fixtures.auth",
    "tests.fixtures.builder",
    "tests.fixtures.clients",
    "tests.fixtures.ecr",
    "tests.fixtures.images",
    "tests.fixtures.postgres",
    "tests.fixtures.rabbitmq",
    "tests.fixtures.profiler",
    "tests.fixtures.registry",
    "tests.fixtures.s3",
    "tests.fixtures.services",
]
