"""The builder's own cost, and what its layer cache saves.

1. `app.submitted` -> `build.done` through the running service (bus, claim, git fetch, buildah
   build, index push, read-back, log upload, outbox) against the same work done directly: `git
   clone --depth 1`, then the same backend's `build` + `push` (same registry, same credentials).
   Each pair changes the source first, so neither side finds the expensive step cached.
   Target <= 1.2.
2. The second build of unchanged source through the service against the first one. Target >= 5.

Everything real and on loopback: the run's own Postgres database, RabbitMQ, the auth service
issuing registry tokens, Debian's docker-registry trusting them, `git daemon`, an S3 server.
The apps are amd64 only (arm64 under qemu costs the same on both sides and would only add time).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

ADMIN_DSN = os.environ.get("SAGE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("SAGE_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
PAIRS = 3
# The expensive step a real app has (compiling, installing packages): some seconds of CPU and a
# layer of data. Real apps take minutes here, so the cache's gain below is an understatement.
WORK = (
    "echo working; i=0; while [ $i -lt 6000000 ]; do i=$((i+1)); done; "
    "dd if=/dev/urandom of=/data bs=1M count=64 2>/dev/null; echo done"
)


def _rows(pipeline: list[float], direct: list[float], first: float, second: float) -> list[dict]:
    p, d = statistics.median(pipeline), statistics.median(direct)
    return [
        {
            "name": "builder: app.submitted -> build.done (vs direct build+push)",
            "value": p,
            "unit": "s",
            "baseline": d,
            "ratio": p / d,
            "target": "<= 1.2",
        },
        {
            "name": "builder: second build of unchanged source (first / second)",
            "value": second,
            "unit": "s",
            "baseline": first,
            "ratio": first / second,
            "target": ">= 5",
        },
    ]


async def _database() -> tuple[str, str]:
    name = f"sage_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name, f"{ADMIN_DSN.rpartition('/')[0]}/{name}"


async def _drop(name: str) -> None:
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def main() -> list[dict]:
    from sage_auth.signing import ensure_keypair
    from sage_builder.app import make_builder
    from sage_builder.models import BuildRequest, Platform
    from sage_builder.registry import write_authfile
    from sage_builder.source import locate
    from tests.fixtures.auth import SERVICE_CLIENTS, start_auth
    from tests.fixtures.s3 import S3Server
    from tests.support.builder import (
        GitServer,
        Harness,
        RegistryServer,
        commit_all,
        config_for_tests,
        delete_queues,
        free_port,
        git,
        running_builder,
        scratch_app,
    )

    db_name, dsn = await _database()
    tmp = Path(tempfile.mkdtemp(prefix="sage-bench-builder-"))
    service_secrets = {c: secrets.token_urlsafe(32) for c in SERVICE_CLIENTS}
    auth = await start_auth(dsn, tmp / "keys", service_secrets)
    _, cert = ensure_keypair(str(tmp / "keys"))
    registry = RegistryServer(tmp / "registry", realm=f"{auth.url}/auth/registry/token", cert=cert)
    gits = GitServer(tmp / "git")
    s3 = S3Server(tmp / "s3" / "data")
    suffix = uuid.uuid4().hex[:8]
    try:
        for server in (registry, gits, s3):
            await asyncio.to_thread(server.start)
        config = config_for_tests(
            port=free_port(),
            database_url=dsn,
            db_schema="builder",
            amqp_url=AMQP_URL,
            exchange=f"bench.builder.{suffix}",
            queue=f"builder.app-submitted.bench.{suffix}",
            cancel_queue=f"builder.build-cancel.bench.{suffix}",
            auth_url=auth.url,
            client_id="builder",
            client_secret=service_secrets["builder"],
            work_dir=tmp / "work",
            registry=registry.address,
            s3_endpoint=s3.endpoint,
            s3_access_key=s3.access_key,
            s3_secret_key=s3.secret_key,
            log_flush_seconds=1.0,
            cancel_poll_seconds=1.0,
        )
        work = tmp / "app"
        scratch_app(work, WORK, steps=("COPY stamp /stamp",), extra={"stamp": "0"})
        commit_all(work, "bench app")
        gits.publish("app", work)

        def change_source(n: int) -> None:
            (work / "stamp").write_text(str(n))
            commit_all(work, f"change {n}")
            gits.publish("app", work)

        direct_builder = make_builder(config)
        backend, cache = direct_builder.backend, direct_builder.cache
        creds = direct_builder.creds
        assert creds is not None
        authfile = write_authfile(tmp / "direct-auth", registry.address, creds)

        async def direct(n: int) -> float:
            await asyncio.to_thread(change_source, n)
            checkout_dir = tmp / f"direct-{n}"
            started = time.perf_counter()
            await asyncio.to_thread(
                git, tmp, "clone", "-q", "--depth", "1", gits.url("app"), str(checkout_dir)
            )
            request = BuildRequest(
                build_id=f"direct-{n}",
                app_id="bench/direct:1.0",
                url=gits.url("app"),
                branch=None,
                tag=None,
                commit=None,
                directory=".",
                dockerfile="Dockerfile",
                platforms=(Platform.parse("linux/amd64"),),
            )
            checkout = locate(checkout_dir, "HEAD", ".", "Dockerfile")
            destination = f"{registry.address}/bench/direct:1.0"
            async with cache.use(request.url) as store:
                image = await backend.build(
                    request, checkout, request.platforms[0], store, lambda _: None
                )
                await backend.push(request, [image], destination, store, lambda _: None, authfile)
            elapsed = time.perf_counter() - started
            async with cache.use(request.url) as store:
                await backend.release(request, [image], store)
            return elapsed

        async with (
            running_builder(config),
            Harness.open(AMQP_URL, config.exchange, gits.url) as harness,
        ):

            async def through_service(n: int | None) -> float:
                if n is not None:
                    await asyncio.to_thread(change_source, n)
                started = time.perf_counter()
                build_id = await harness.submit("bench/app:1.0", "app")
                done = await harness.events.done(build_id, within=600)
                elapsed = time.perf_counter() - started
                if done.status != "success":
                    raise RuntimeError(f"bench build failed: {done.error_class}: {done.error}")
                return elapsed

            await direct(0)  # warm both paths once (buildah, registry, token service)
            await through_service(1)
            pipeline: list[float] = []
            plain: list[float] = []
            for i in range(PAIRS):
                plain.append(await direct(10 + 2 * i))
                pipeline.append(await through_service(11 + 2 * i))
            first = await through_service(100)
            second = await through_service(None)
        await delete_queues(AMQP_URL, config)
        return _rows(pipeline, plain, first, second)
    finally:
        for server in (registry, gits, s3):
            await asyncio.to_thread(server.stop)
        await auth.stop()
        await _drop(db_name)
        await asyncio.to_thread(_rmtree, tmp)


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
