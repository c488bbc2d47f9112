"""Profiler benchmarks: the cost of measuring, and eight apps queued at once.

1. The same container (burns 2 CPU-seconds) run through the profiler's Docker runner (own cgroup,
   10 Hz sampling, exact totals, clean-up) against a plain docker-SDK run with the same limits in
   a cgroup of the same standing; end-to-end time, medians of alternating runs. Target: <= 1.05.
2. Eight small apps announced by `build.done` at once to the profiler service on the real broker:
   all eight `profile.done` arrive, none lost; total time against the same eight profiles done
   directly (no bus, no database).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from typing import Any

import aio_pika
import asyncpg
import docker
from aiohttp import web

from sage_common.events import CloudEvent, make_event
from sage_common.schemas import BuildDone
from sage_profiler.app import create_app
from sage_profiler.cgroup import detect
from sage_profiler.config import Config
from sage_profiler.fakes import FakeDataSource
from sage_profiler.runner import RunSpec
from sage_profiler.runner_docker import DockerRunner
from sage_profiler.service import Profiler, profile
from tests.support.testapps import build_load_image

ADMIN_DSN = os.environ.get("SAGE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("SAGE_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
MiB = 1 << 20
REPEATS = 8
APPS = 8


def _plain_run(client: Any, image: str, args: list[str]) -> float:
    """create, start, wait, remove: what anyone would do without the profiler.

    The container sits in a fresh cgroup beside Docker's own, as the profiled one does, so that
    both compete alike with whatever else runs on the machine: the difference is the measuring.
    """
    parent = f"sage-profiler-bench/{uuid.uuid4().hex[:12]}"
    start = time.monotonic()
    container = client.containers.create(
        image,
        command=args,
        network_mode="none",
        read_only=True,
        mem_limit=512 * MiB,
        memswap_limit=512 * MiB,
        nano_cpus=int(2e9),
        pids_limit=256,
        cgroup_parent="/" + parent,
    )
    container.start()
    container.wait()
    container.remove(force=True)
    elapsed = time.monotonic() - start
    detect().remove(parent)
    return elapsed


async def _overhead(image: str) -> list[dict[str, Any]]:
    client = docker.from_env()
    runner = DockerRunner(pull_policy="never")
    args = ["cpu=2"]
    spec = RunSpec(image=image, args=args, memory_bytes=512 * MiB, cpus=2.0, timeout_seconds=60)
    plain: list[float] = []
    profiled: list[float] = []
    inner: list[float] = []
    try:
        for i in range(REPEATS):  # alternate which goes first, so drift hits both alike
            if i % 2 == 0:
                plain.append(await asyncio.to_thread(_plain_run, client, image, args))
            start = time.monotonic()
            result = await runner.run(spec)
            profiled.append(time.monotonic() - start)
            inner.append(result.wall_seconds)
            if i % 2 == 1:
                plain.append(await asyncio.to_thread(_plain_run, client, image, args))
    finally:
        runner.close()
        client.close()
    base, value = statistics.median(plain), statistics.median(profiled)
    # each pair ran back to back: the median of their ratios is steadier than a ratio of medians
    ratio = statistics.median(p / b for p, b in zip(profiled, plain, strict=True))
    return [
        {
            "name": "profiled run vs plain run (2 CPU-s app)",
            "value": value,
            "unit": "s",
            "baseline": base,
            "ratio": ratio,
            "target": "<= 1.05",
        },
        {
            "name": "  app's own wall time when profiled",
            "value": statistics.median(inner),
            "unit": "s",
        },
    ]


async def _direct(image: str, builds: list[BuildDone], config: Config) -> float:
    runner = DockerRunner(pull_policy="never")
    try:
        start = time.monotonic()
        for build in builds:
            await profile(Profiler(runner, FakeDataSource(), config), build)
        return time.monotonic() - start
    finally:
        runner.close()


async def _queued(image: str) -> list[dict[str, Any]]:
    tag = uuid.uuid4().hex[:8]
    database = f"sage_bench_{tag}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{database}"')
    await admin.close()
    config = Config(
        database_url=ADMIN_DSN.rpartition("/")[0] + f"/{database}",
        amqp_url=AMQP_URL,
        exchange=f"sage.bench.profiler.{tag}",
        queue=f"profiler.bench.{tag}",
        pull_policy="never",
        default_repetitions=1,
        outbox_poll_seconds=0.2,
    )
    builds = [
        BuildDone(
            app_id=f"bench/app{i}:1.0",
            build_id=f"bench-{tag}-{i}",
            status="success",
            image=image,
            testing={"args": [f"mem={16 + 8 * i}", "cpu=0.3"]},
        )
        for i in range(APPS)
    ]
    conn = await aio_pika.connect_robust(AMQP_URL)
    app_runner: web.AppRunner | None = None
    try:
        channel = await conn.channel()
        exchange = await channel.declare_exchange(
            config.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, "profile.done")
        got: dict[str, str] = {}
        all_in = asyncio.Event()

        async def on(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                data = CloudEvent.model_validate_json(message.body).data
                got[data["build_id"]] = data["status"]
                if len(got) >= APPS:
                    all_in.set()

        await queue.consume(on)
        app_runner = web.AppRunner(create_app(config))
        await app_runner.setup()
        start = time.monotonic()
        for build in builds:
            event = make_event("bench/builder", build, subject=build.app_id)
            await exchange.publish(aio_pika.Message(event.model_dump_json().encode()), "build.done")
        async with asyncio.timeout(300):
            await all_in.wait()
        total = time.monotonic() - start
        await app_runner.cleanup()
        app_runner = None
        direct = await _direct(image, builds, config)
        for name in (config.queue, f"{config.queue}.dlq"):
            await channel.queue_delete(name)
        for delay in ("5000", "30000", "120000"):
            await channel.queue_delete(f"{config.queue}.retry.{delay}ms")
        await channel.exchange_delete(config.exchange)
    finally:
        if app_runner is not None:
            await app_runner.cleanup()
        await conn.close()
        admin = await asyncpg.connect(ADMIN_DSN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()
    passed = sum(1 for s in got.values() if s == "passed")
    return [
        {
            "name": f"{APPS} apps queued at once: profiled",
            "value": len(got),
            "unit": "apps",
            "baseline": APPS,
            "ratio": len(got) / APPS,
            "target": ">= 1.0",
        },
        {"name": f"{APPS} apps queued at once: passed", "value": passed, "unit": "apps"},
        {
            "name": f"{APPS} apps queued at once: total time",
            "value": total,
            "unit": "s",
            "baseline": direct,
            "ratio": total / direct,
        },
    ]


async def main() -> list[dict[str, Any]]:
    client = docker.from_env()
    image = f"sage-profiler-bench/load:{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(build_load_image, client, image)
    try:
        return await _overhead(image) + await _queued(image)
    finally:
        client.images.remove(image, force=True)
        client.close()
        detect().remove("sage-profiler-bench")
