"""The ECR's side of the pipeline under a queue: N apps submitted at once, each to review.

The real ECR API (its own database, the real broker, outbox, consumer and state machine, the
real auth service) takes N submissions at once over HTTP; the builder and the profiler are
played by the bench, answering each `app.submitted` at once with `build.started`, `build.done`
and `profile.done` as they do. The time runs from the first submit to the last
`review.requested`: what the ECR itself spends per app, with no build or profile work.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
import uuid
from typing import Any

import aiohttp
import asyncpg

from bench._auth import running_auth
from sage_common.bus import Bus, queue_names
from sage_common.events import CloudEvent, make_event
from sage_common.schemas import ArchImage, BuildDone, BuildStarted, ProfileDone
from sage_ecr.config import Config
from tests.support.bus import delete_topology
from tests.support.ecr import EventTap, app_spec, running_ecr

ADMIN_DSN = os.environ.get("SAGE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("SAGE_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
WATCHED = ("app.submitted", "review.requested")


def _answers(app_id: str, build_id: str) -> list[Any]:
    """What the builder and the profiler publish for a successful app."""
    return [
        BuildStarted(app_id=app_id, build_id=build_id, started_at="2030-01-01T00:00:00Z"),
        BuildDone(
            app_id=app_id,
            build_id=build_id,
            status="success",
            image=f"127.0.0.1:5000/{app_id.replace(':', '/')}",
            index_digest="sha256:" + "a" * 64,
            images=[ArchImage(architecture="linux/amd64", digest="sha256:" + "b" * 64)],
            duration_seconds=1.0,
            log_location=f"s3://build-logs/{build_id}.log",
            log_tail=["done"],
        ),
        ProfileDone(
            app_id=app_id,
            build_id=build_id,
            profile_id=str(uuid.uuid4()),
            status="passed",
            recommended={"memory_bytes": 300_000_000, "cpu_cores": 0.5},
            period={"smallest_safe_seconds": 60},
            concurrency={"copies": 2, "ok": True},
        ),
    ]


async def _play(tap: EventTap, exchange: str) -> None:
    """Answer every app.submitted as it arrives, as the builder and the profiler would."""
    bus = Bus(AMQP_URL, exchange=exchange, service="bench-player")
    await bus.connect()
    answered: set[str] = set()

    def unanswered(e: CloudEvent) -> bool:
        return e.type.endswith("app.submitted.v1") and e.data["build_id"] not in answered

    try:
        while True:
            event = await tap.get(unanswered, within=3600)
            answered.add(event.data["build_id"])
            for data in _answers(event.subject or "", event.data["build_id"]):
                await bus.publish(make_event("bench-player", data, subject=event.subject))
    finally:
        await bus.close()


async def growth(sizes: tuple[int, ...]) -> dict[int, float]:
    """Seconds from the first submit to the last `review.requested`, for each batch size."""
    database = f"sage_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{database}"')
    dsn = ADMIN_DSN.rpartition("/")[0] + f"/{database}"
    s, secret = uuid.uuid4().hex[:8], secrets.token_urlsafe(32)
    config = None
    try:
        async with running_auth(dsn, {"ecr-api": secret}) as (auth_url, _, token):
            config = Config(
                database_url=dsn,
                amqp_url=AMQP_URL,
                exchange=f"bench.pipeline.ecr.{s}",
                consumer_queue=f"bench.pipeline.ecr.{s}",
                auth_url=auth_url,
                client_id="ecr-api",
                client_secret=secret,
                log_level="WARNING",
            )
            async with (
                running_ecr(config) as ecr,
                EventTap(AMQP_URL, config.exchange, WATCHED) as tap,
                aiohttp.ClientSession(headers={"Authorization": f"sage {token}"}) as http,
            ):
                player = asyncio.create_task(_play(tap, config.exchange))
                try:
                    await _batch(http, ecr.url, tap, "warm", 1)
                    return {n: await _batch(http, ecr.url, tap, f"q{n}", n) for n in sizes}
                finally:
                    player.cancel()
                    await asyncio.gather(player, return_exceptions=True)
    finally:
        if config is not None:
            await delete_topology(
                AMQP_URL, exchanges=[config.exchange], queues=queue_names(config.consumer_queue)
            )
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()


async def _batch(http: aiohttp.ClientSession, url: str, tap: EventTap, ns: str, n: int) -> float:
    async def submit(i: int) -> str:
        async with http.post(f"{url}/api/submit", json=app_spec(f"bench{ns}", f"app{i}")) as r:
            body = await r.json()
            if r.status != 200:
                raise RuntimeError(f"submit answered {r.status}: {body}")
            return str(body["id"])

    started = time.perf_counter()
    ids = set(await asyncio.gather(*(submit(i) for i in range(n))))
    deadline = started + 600
    while not ids <= {e.subject for e in tap.seen if e.type.endswith("review.requested.v1")}:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"not every one of {n} apps reached review within 600 s")
        await asyncio.sleep(0.02)
    return time.perf_counter() - started
