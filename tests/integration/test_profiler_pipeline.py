"""The profiler as a service: build.done in, profile.done out, on the real broker and database.

Each test gets its own exchange, queue and schema, so parallel runs and other services' consumers
never see its events.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import asyncpg
import docker
import pytest
from aiohttp import web

from sage_common.bus import queue_names
from sage_common.events import CloudEvent, make_event
from sage_common.schemas import BuildCancelled, BuildDone, ProfileDone
from sage_common.work import RETRY_DELAYS
from sage_profiler.app import create_app
from sage_profiler.config import Config
from sage_profiler.runner_docker import LABEL
from tests.support.ports import free_port
from tests.support.testapps import build_load_image

MiB = 1 << 20
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def load_image() -> Iterator[str]:
    client = docker.from_env()
    tag = "sage-profiler-test/load:pipeline"
    build_load_image(client, tag)
    yield tag
    client.images.remove(tag, force=True)
    client.close()


@pytest.fixture
def settings(database_url: str, amqp_url: str, unique: str) -> dict[str, Any]:
    """One profiler's configuration, private to this test."""
    return {
        "database_url": database_url,
        "db_schema": f"profiler_{unique}",
        "amqp_url": amqp_url,
        "exchange": f"sage.test.profiler.{unique}",
        "queue": f"profiler.test.{unique}",
        "cancel_queue": f"profiler.test.{unique}.cancel",
        "pull_policy": "never",
        "memory_limit_bytes": 256 * MiB,
        "cpu_limit": 1.0,
        "default_repetitions": 1,
        "outbox_poll_seconds": 0.2,
    }


class Events:
    """Publishes build.done and collects profile.done on the test's own exchange."""

    def __init__(self, conn: aio_pika.abc.AbstractRobustConnection, exchange: Any, queue: Any):
        self.conn, self.exchange, self.queue = conn, exchange, queue
        self.received: list[CloudEvent] = []
        self._arrived = asyncio.Condition()

    async def publish(self, event: CloudEvent) -> None:
        await self.exchange.publish(
            aio_pika.Message(
                event.model_dump_json().encode(),
                message_id=event.id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=event.routing_key,
        )

    async def _on(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process():
            async with self._arrived:
                self.received.append(CloudEvent.model_validate_json(message.body))
                self._arrived.notify_all()

    async def wait_for(self, build_id: str, within: float = 90) -> ProfileDone:
        async with asyncio.timeout(within), self._arrived:
            await self._arrived.wait_for(lambda: bool(self.for_build(build_id)))
        return self.for_build(build_id)[0]

    def for_build(self, build_id: str) -> list[ProfileDone]:
        found = [e.parse_data(ProfileDone) for e in self.received]
        return [p for p in found if p.build_id == build_id]


@pytest.fixture
async def events(settings: dict[str, Any]) -> AsyncIterator[Events]:
    conn = await aio_pika.connect_robust(settings["amqp_url"])
    channel = await conn.channel()
    exchange = await channel.declare_exchange(
        settings["exchange"], aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, "profile.done")
    ev = Events(conn, exchange, queue)
    await queue.consume(ev._on)
    yield ev
    cancels = settings["cancel_queue"]
    for name in (*queue_names(settings["queue"], RETRY_DELAYS), *queue_names(cancels)):
        await channel.queue_delete(name)
    await channel.exchange_delete(settings["exchange"])
    await conn.close()


@pytest.fixture
async def start_profiler(settings: dict[str, Any]) -> AsyncIterator[Any]:
    """Start the profiler service in this process; stopped at the end of the test."""
    runners: list[web.AppRunner] = []

    async def start() -> web.AppRunner:
        runner = web.AppRunner(create_app(Config(**settings)))
        await runner.setup()
        runners.append(runner)
        return runner

    yield start
    for runner in runners:
        await runner.cleanup()


def build_done(
    image: str, build_id: str, testing: dict[str, Any] | None = None, status: str = "success"
) -> CloudEvent:
    data = BuildDone(
        app_id="test/load:1.0", build_id=build_id, status=status, image=image, testing=testing
    )
    return make_event("test/builder", data, subject=data.app_id)


async def stored_profiles(settings: dict[str, Any], build_id: str) -> int:
    conn = await asyncpg.connect(settings["database_url"])
    try:
        return await conn.fetchval(
            f"SELECT count(*) FROM {settings['db_schema']}.profiles WHERE build_id = $1", build_id
        )
    finally:
        await conn.close()


async def test_a_successful_build_is_profiled_and_reported(
    load_image, events: Events, start_profiler, settings, unique
) -> None:
    await start_profiler()
    await events.publish(build_done(load_image, f"fail-{unique}", status="failure"))
    await events.publish(build_done(load_image, f"ok-{unique}", {"args": ["mem=32", "cpu=0.2"]}))
    done = await events.wait_for(f"ok-{unique}")
    assert done.status == "passed", done.reason
    assert done.runs[0].peak_memory_bytes >= 32 * MiB and done.runs[0].exit_code == 0
    assert done.recommended["memory_limit_bytes"] >= 40 * MiB
    event = next(e for e in events.received if e.data["build_id"] == f"ok-{unique}")
    assert (
        event.type == "org.sagecontinuum.ecr.profile.done.v1" and event.subject == "test/load:1.0"
    )
    assert events.for_build(f"fail-{unique}") == []  # handled first (prefetch 1), no profile
    assert await stored_profiles(settings, f"ok-{unique}") == 1


async def test_a_duplicated_delivery_gives_one_profile(
    load_image, events: Events, start_profiler, settings, unique
) -> None:
    await start_profiler()
    event = build_done(load_image, f"dup-{unique}", {"args": ["exit=4"]})
    await events.publish(event)
    await events.publish(event)
    await events.publish(build_done(load_image, f"again-{unique}", {"args": ["exit=4"]}))
    # the same build announced again under a new event id is not profiled twice either
    await events.publish(build_done(load_image, f"dup-{unique}", {"args": ["exit=4"]}))
    await events.publish(build_done(load_image, f"marker-{unique}", {"args": ["exit=0"]}))
    await events.wait_for(f"marker-{unique}")
    dup = events.for_build(f"dup-{unique}")
    assert len(dup) == 1 and dup[0].status == "failed"
    assert "exited 4, expected 0" in dup[0].reason
    assert await stored_profiles(settings, f"dup-{unique}") == 1


def containers_of(build_id: str, *, running: bool) -> list[Any]:
    client = docker.from_env()
    try:
        return client.containers.list(
            all=not running, filters={"label": f"org.sagecontinuum.build={build_id}"}
        )
    finally:
        client.close()


async def wait_until(predicate, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_a_profiler_killed_mid_run_is_redelivered_and_reports_once(
    load_image, events: Events, start_profiler, settings, unique, tmp_path
) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.update({f"SAGE_PROFILER_{k.upper()}": str(v) for k, v in settings.items()})
    env["SAGE_PROFILER_PORT"] = str(port)
    log_path = tmp_path / "first.log"
    out = await asyncio.to_thread(log_path.open, "wb")
    first = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sage_profiler",
        env=env,
        cwd=ROOT,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:

        async def ready() -> bool:
            assert first.returncode is None, log_path.read_text()[-3000:]
            try:
                async with (
                    aiohttp.ClientSession() as http,
                    http.get(f"http://127.0.0.1:{port}/readyz") as resp,
                ):
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        await wait_until(ready, 60, "the first profiler to be ready")
        build_id = f"killed-{unique}"
        await events.publish(
            build_done(load_image, build_id, {"args": ["sleep=2"], "repetitions": 2})
        )

        async def running() -> bool:
            return bool(await asyncio.to_thread(containers_of, build_id, running=True))

        await wait_until(running, 60, "the first profiler to start the app")
        first.send_signal(signal.SIGKILL)
        await asyncio.wait_for(first.wait(), 10)
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
        out.close()
    orphan = await asyncio.to_thread(containers_of, build_id, running=False)
    assert orphan and orphan[0].labels[f"{LABEL}.owner"].endswith(f":{first.pid}")

    await start_profiler()  # a new profiler removes the orphan, then gets the message again
    done = await events.wait_for(build_id)
    await events.publish(build_done(load_image, f"after-{unique}", {"args": ["exit=0"]}))
    await events.wait_for(f"after-{unique}")
    assert done.status == "passed" and len(done.runs) == 2
    assert len(events.for_build(build_id)) == 1
    assert await stored_profiles(settings, build_id) == 1
    left = await asyncio.to_thread(containers_of, build_id, running=False)
    assert left == []


def build_cancel(build_id: str) -> CloudEvent:
    data = BuildCancelled(app_id="test/load:1.0", build_id=build_id, requested_by="alice")
    return make_event("ecr-api", data, subject=data.app_id)


async def profiler_rows(settings: dict[str, Any], sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(settings["database_url"])
    try:
        return await conn.fetchval(sql.format(schema=settings["db_schema"]), *args)
    finally:
        await conn.close()


async def test_a_cancelled_build_loses_its_running_profile_and_its_slot(
    load_image, events: Events, start_profiler, settings, unique
) -> None:
    await start_profiler()
    build_id = f"superseded-{unique}"
    # Long enough (2 x 60 s) that only a stopped run lets the next build through in time.
    await events.publish(
        build_done(load_image, build_id, {"args": ["sleep=60"], "repetitions": 2, "timeout": 90})
    )

    async def running() -> bool:
        return bool(await asyncio.to_thread(containers_of, build_id, running=True))

    await wait_until(running, 60, "the superseded build's test to start")
    await events.publish(build_cancel(build_id))

    async def removed() -> bool:
        return not await asyncio.to_thread(containers_of, build_id, running=False)

    await wait_until(removed, 30, "the cancelled build's containers to be removed")
    await events.publish(build_done(load_image, f"next-{unique}", {"args": ["exit=0"]}))
    nxt = await events.wait_for(f"next-{unique}", within=60)  # the slot is free again
    assert nxt.status == "passed"
    assert events.for_build(build_id) == []
    assert await stored_profiles(settings, build_id) == 0
    assert (
        await profiler_rows(
            settings, "SELECT requested_by FROM {schema}.cancels WHERE build_id = $1", build_id
        )
        == "alice"
    )
    settled = await profiler_rows(
        settings, "SELECT count(*) FROM {schema}.processed_events WHERE consumer = $1",
        settings["queue"],
    )  # fmt: skip
    assert settled == 2  # both build.done events were settled, none left to redeliver


async def test_a_build_cancelled_before_its_build_done_is_never_profiled(
    load_image, events: Events, start_profiler, settings, unique
) -> None:
    await start_profiler()
    build_id = f"early-{unique}"
    await events.publish(build_cancel(build_id))
    await events.publish(build_cancel(build_id))  # a second cancel of it changes nothing

    async def recorded() -> bool:
        sql = "SELECT count(*) FROM {schema}.cancels WHERE build_id = $1"
        return await profiler_rows(settings, sql, build_id) == 1

    await wait_until(recorded, 30, "the cancel to be recorded")
    await events.publish(build_done(load_image, build_id, {"args": ["exit=0"]}))
    await events.publish(build_done(load_image, f"marker-{unique}", {"args": ["exit=0"]}))
    await events.wait_for(f"marker-{unique}")
    assert events.for_build(build_id) == []
    assert await stored_profiles(settings, build_id) == 0
    assert await asyncio.to_thread(containers_of, build_id, running=False) == []
