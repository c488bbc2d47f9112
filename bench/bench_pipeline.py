"""How the pipeline's time grows with the queue: 1, 20 and 100 apps submitted at once.

The ECR's part first (`bench/_pipeline_ecr.py`): N submissions at once over HTTP to the real
ECR API, to the last `review.requested`, with the builder and profiler played (no build work).
Then the builder's: the real builder (bus, claim, git fetch, buildah build, index push to the registry, log upload,
outbox), as `bench_builder` runs it, is handed N `app.submitted` events at once; the figure is
the time from the first submit to the last `build.done`, and per app that time / N. A queue
that costs the same per app at 100 as at 1 is linear (ratio 1 to the 1-app case); a ratio that
grows is worse than linear. Builds run `concurrency` at a time (the builder's setting, 2 here),
so per-app time at 20 and 100 is also expected to fall below the 1-app time, not only to stay.

What each app's work is: `FROM scratch`, `COPY` a static busybox (2 MB), no `RUN`; amd64 only;
each in a git repository of its own (copies of one): the builder keeps one layer store per
source, so no build finds another's layers cached. Real apps compile and install for minutes;
these are built in about a second, so what shows is the pipeline's own cost per app (fetch,
build, push, log upload, events), which is what could grow worse than linearly with the queue.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

ADMIN_DSN = os.environ.get("SAGE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("SAGE_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
SIZES = (1, 20, 100)
DOCKERFILE = 'FROM scratch\nCOPY busybox /bin/busybox\nCMD ["/bin/busybox", "true"]\n'
CONCURRENCY = 2


def _rows(times: dict[int, float]) -> list[dict[str, Any]]:
    one = times[min(times)]
    return [
        {
            "name": f"pipeline (builder): {n} apps queued at once, per app",
            "value": total / n,
            "unit": "s",
            "baseline": one,
            "ratio": total / n / one,
            "target": None,
            "detail": f"submit of the first -> build.done of the last: {total:.1f} s for {n} "
            f"(x{total / one:.1f} the 1-app time for x{n} the apps); each app: FROM scratch + COPY "
            f"busybox, no RUN, built and pushed for amd64, {CONCURRENCY} builds at a time",
        }
        for n, total in sorted(times.items())
    ]


async def main() -> list[dict[str, Any]]:
    from bench import _pipeline_ecr

    ecr = await _pipeline_ecr.growth(SIZES)
    return _ecr_rows(ecr) + _rows(await _builder_growth())


def _ecr_rows(times: dict[int, float]) -> list[dict[str, Any]]:
    one = times[min(times)]
    return [
        {
            "name": f"pipeline (ECR): {n} apps submitted at once, per app",
            "value": total / n,
            "unit": "s",
            "baseline": one,
            "ratio": total / n / one,
            "target": None,
            "detail": f"first submit -> last review.requested: {total:.2f} s for {n}; each app: "
            "submit over HTTP, outbox, bus, state machine; builder and profiler played "
            "(answer at once, no build or profile work)",
        }
        for n, total in sorted(times.items())
    ]


async def _builder_growth() -> dict[int, float]:
    from sage_auth.signing import ensure_keypair
    from tests.fixtures.auth import SERVICE_CLIENTS, start_auth
    from tests.fixtures.s3 import S3Server
    from tests.support.builder import (
        BUSYBOX,
        GitServer,
        Harness,
        RegistryServer,
        commit_all,
        config_for_tests,
        delete_queues,
        free_port,
        running_builder,
    )

    db_name = f"sage_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{db_name}"')
    dsn = f"{ADMIN_DSN.rpartition('/')[0]}/{db_name}"
    tmp = Path(tempfile.mkdtemp(prefix="sage-bench-pipeline-"))
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
            port=free_port(),
            database_url=dsn,
            db_schema="builder",
            amqp_url=AMQP_URL,
            exchange=f"bench.pipeline.{suffix}",
            queue=f"builder.app-submitted.bench-pipeline.{suffix}",
            cancel_queue=f"builder.build-cancel.bench-pipeline.{suffix}",
            auth_url=auth.url,
            client_id="builder",
            client_secret=service_secrets["builder"],
            work_dir=tmp / "work",
            registry=registry.address,
            s3_endpoint=s3.endpoint,
            s3_access_key=s3.access_key,
            s3_secret_key=s3.secret_key,
            concurrency=CONCURRENCY,
            log_flush_seconds=1.0,
            cancel_poll_seconds=1.0,
        )

        work = tmp / "app"
        work.mkdir()
        shutil.copy(BUSYBOX["amd64"], work / "busybox")
        (work / "Dockerfile").write_text(DOCKERFILE)
        commit_all(work, "bench app")
        await asyncio.to_thread(gits.publish, "app", work)
        names = {n: [f"q{n}a{i}" for i in range(n)] for n in SIZES}
        for name in ["warm", *(a for batch in names.values() for a in batch)]:
            await asyncio.to_thread(
                shutil.copytree, gits.base / "app.git", gits.base / f"{name}.git"
            )

        async with (
            running_builder(config),
            Harness.open(AMQP_URL, config.exchange, gits.url) as harness,
        ):

            async def queue(batch: list[str]) -> float:
                started = time.perf_counter()
                ids = [await harness.submit(f"bench/{a}:1.0", a) for a in batch]
                done = [await harness.events.done(i, within=900) for i in ids]
                elapsed = time.perf_counter() - started
                failed = [d for d in done if d.status != "success"]
                if failed:
                    raise RuntimeError(f"{len(failed)} builds failed, e.g. {failed[0].error}")
                return elapsed

            await queue(["warm"])  # buildah, registry and token service warmed once
            return {n: await queue(batch) for n, batch in names.items()}
    finally:
        if config is not None:
            await delete_queues(AMQP_URL, config)
        for server in (registry, gits, s3):
            await asyncio.to_thread(server.stop)
        await auth.stop()
        await admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        await admin.close()
        await asyncio.to_thread(shutil.rmtree, tmp, True)
