"""What a real builder stands on, for the benches that run one (`builder`, `pipeline`).

A database of its own, the auth service, a registry that trusts the auth service's tokens, a
loopback git server, an S3 server, and a builder configuration on all of them. Everything is
stopped and removed afterwards, the builder's queues included.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from sage_auth.signing import ensure_keypair
from sage_builder.config import Config
from tests.fixtures.auth import SERVICE_CLIENTS, start_auth
from tests.fixtures.s3 import S3Server
from tests.support.builder import (
    GitServer,
    RegistryServer,
    config_for_tests,
    delete_queues,
    free_port,
)

ADMIN_DSN = os.environ.get("SAGE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("SAGE_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")


@dataclass
class BuilderStack:
    config: Config
    tmp: Path  # removed afterwards
    registry: RegistryServer
    gits: GitServer


@contextlib.asynccontextmanager
async def builder_stack(name: str, **settings: Any) -> AsyncIterator[BuilderStack]:
    """The parts, started; `settings` adds to or overrides the builder's configuration."""
    db_name = f"sage_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{db_name}"')
    dsn = f"{ADMIN_DSN.rpartition('/')[0]}/{db_name}"
    tmp = Path(tempfile.mkdtemp(prefix=f"sage-bench-{name}-"))
    service_secrets = {c: secrets.token_urlsafe(32) for c in SERVICE_CLIENTS}
    auth = await start_auth(dsn, tmp / "keys", service_secrets)
    _, cert = ensure_keypair(str(tmp / "keys"))
    registry = RegistryServer(tmp / "registry", realm=f"{auth.url}/auth/registry/token", cert=cert)
    gits = GitServer(tmp / "git")
    s3 = S3Server(tmp / "s3" / "data")
    suffix = uuid.uuid4().hex[:8]
    config = None
    try:
        for server in (registry, gits, s3):
            await asyncio.to_thread(server.start)
        config = config_for_tests(
            **{
                "port": free_port(),
                "database_url": dsn,
                "db_schema": "builder",
                "amqp_url": AMQP_URL,
                "exchange": f"bench.{name}.{suffix}",
                "queue": f"builder.app-submitted.bench-{name}.{suffix}",
                "cancel_queue": f"builder.build-cancel.bench-{name}.{suffix}",
                "auth_url": auth.url,
                "client_id": "builder",
                "client_secret": service_secrets["builder"],
                "work_dir": tmp / "work",
                "registry": registry.address,
                "s3_endpoint": s3.endpoint,
                "s3_access_key": s3.access_key,
                "s3_secret_key": s3.secret_key,
                "log_flush_seconds": 1.0,
                "cancel_poll_seconds": 1.0,
                **settings,
            }
        )
        yield BuilderStack(config, tmp, registry, gits)
    finally:
        if config is not None:
            await delete_queues(AMQP_URL, config)
        for server in (registry, gits, s3):
            await asyncio.to_thread(server.stop)
        await auth.stop()
        await admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        await admin.close()
        await asyncio.to_thread(shutil.rmtree, tmp, True)
