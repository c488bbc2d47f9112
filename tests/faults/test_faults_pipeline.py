"""The pipeline heals without a human: apps in flight through the ECR API while its database
restarts, its broker connection is lost, or its process is killed (-9) and started again all
reach review, each event once, and readiness is 503 during the outage and 200 after.

The ECR API runs on a private Postgres cluster that the test stops and starts, and reaches the
broker through a proxy that the test cuts; the builder and profiler are played by the test, which
answers each `app.submitted` with `build.started`, `build.done` and `profile.done` as they do.
Each fault prints its time to recover (outage over -> ready, and -> every app in review).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from sage_common.bus import Bus, queue_names
from sage_common.events import make_event
from sage_common.schemas import ArchImage, BuildDone, BuildStarted, ProfileDone
from sage_ecr.config import Config
from tests.fixtures.auth import MakeUser, call
from tests.fixtures.postgres import PrivatePostgres
from tests.support.bus import TcpProxy, delete_topology, eventually
from tests.support.ecr import EventTap, RunningEcr, app_spec, start_ecr

ROOT = Path(__file__).resolve().parents[2]
APPS = 10
OUT = ("app.submitted", "review.requested", "build.started", "build.done", "profile.done")


@dataclass
class Stack:
    ecr: RunningEcr | Any  # anything with a `url`
    pg: PrivatePostgres | None
    broker: TcpProxy | None
    tap: EventTap
    token: str
    http: aiohttp.ClientSession
    answering: asyncio.Event  # the played builder answers only once it is set


@pytest.fixture
async def stack(
    make_postgres: Callable[[], PrivatePostgres],
    amqp_url: str,
    auth_settings: Callable[[str], dict[str, str]],
    make_user: MakeUser,
) -> AsyncIterator[Stack]:
    s = uuid.uuid4().hex[:8]
    pg = make_postgres()
    broker = TcpProxy()
    await broker.open()
    config = Config(
        database_url=pg.dsn,
        db_schema="ecr",
        amqp_url=broker.url(amqp_url),
        exchange=f"test.faults.{s}",
        consumer_queue=f"test.faults.{s}.ecr",
        outbox_poll_seconds=0.2,
        stall_seconds=3.0,
        **auth_settings("ecr-api"),
    )
    ecr = await start_ecr(config)
    try:
        async with EventTap(amqp_url, config.exchange, OUT) as tap, aiohttp.ClientSession() as http:
            answering = asyncio.Event()
            player = asyncio.create_task(
                play_builder_and_profiler(amqp_url, config.exchange, tap, answering)
            )
            try:
                yield Stack(ecr, pg, broker, tap, await make_user(f"fault{s}"), http, answering)
            finally:
                player.cancel()
                await asyncio.gather(player, return_exceptions=True)
    finally:
        await ecr.stop()
        await broker.close()
        await delete_topology(
            amqp_url, exchanges=[config.exchange], queues=queue_names(config.consumer_queue)
        )


async def play_builder_and_profiler(
    amqp_url: str, exchange: str, tap: EventTap, answering: asyncio.Event
) -> None:
    """Answer every new app.submitted (by build id) as the builder and the profiler would."""
    bus = Bus(amqp_url, exchange=exchange, service="fault-player")
    await bus.connect()
    answered: set[str] = set()
    try:
        while True:
            await answering.wait()
            for event in list(tap.seen):
                if not event.type.endswith("app.submitted.v1"):
                    continue
                build_id = event.data["build_id"]
                if build_id in answered:
                    continue
                answered.add(build_id)
                for data in answers(event.subject or "", build_id):
                    await bus.publish(make_event("fault-player", data, subject=event.subject))
            await asyncio.sleep(0.05)
    finally:
        await bus.close()


def answers(app_id: str, build_id: str) -> list[object]:
    image = f"127.0.0.1:5000/{app_id.replace(':', '/')}"
    return [
        BuildStarted(app_id=app_id, build_id=build_id, started_at="2030-01-01T00:00:00Z"),
        BuildDone(
            app_id=app_id,
            build_id=build_id,
            status="success",
            image=image,
            index_digest="sha256:" + "a" * 64,
            images=[
                ArchImage(architecture="linux/amd64", digest="sha256:" + "b" * 64),
                ArchImage(architecture="linux/arm64", digest="sha256:" + "c" * 64, emulated=True),
            ],
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


async def submit_all(stack: Stack, prefix: str) -> list[str]:
    ids = []
    for n in range(APPS):
        spec = app_spec(f"faults{prefix}", f"app{n}")
        status, body = await call(
            stack.http, "POST", f"{stack.ecr.url}/api/submit", token=stack.token, json=spec
        )
        assert status == 200, body
        ids.append(body["id"])
    return ids


def submitted(tap: EventTap, ids: list[str]) -> bool:
    return {e.subject for e in tap.seen if e.type.endswith("app.submitted.v1")} >= set(ids)


async def readyz(stack: Stack) -> tuple[int, dict[str, str]]:
    async with stack.http.get(f"{stack.ecr.url}/readyz") as r:
        return r.status, (await r.json()).get("failed", {})


async def states(stack: Stack, ids: list[str]) -> dict[str, str]:
    found = {}
    for app_id in ids:
        path = app_id.replace(":", "/")
        status, body = await call(
            stack.http, "GET", f"{stack.ecr.url}/api/apps/{path}/status", token=stack.token
        )
        found[app_id] = body["state"] if status == 200 else f"http {status}"
    return found


async def all_in_review(stack: Stack, ids: list[str]) -> bool:
    try:
        return set((await states(stack, ids)).values()) == {"in_review"}
    except aiohttp.ClientError:
        return False


def assert_each_event_once(tap: EventTap, ids: list[str]) -> None:
    """Per app, one logical event of each type: no duplicate, none lost. (The broker may carry
    the same event id twice after an outage; consumers drop the copy by its id.)"""
    for app_id in ids:
        for kind in OUT:
            distinct = {
                e.id for e in tap.seen if e.subject == app_id and e.type.endswith(f"{kind}.v1")
            }
            assert len(distinct) == 1, (app_id, kind, len(distinct))


async def recover(stack: Stack, ids: list[str], outage_over: float) -> tuple[float, float]:
    async def ready() -> bool:
        try:
            return (await readyz(stack))[0] == 200
        except aiohttp.ClientError:
            return False  # not listening yet

    await eventually(ready, within=60, every=0.1)
    to_ready = time.monotonic() - outage_over
    await eventually(lambda: all_in_review(stack, ids), within=90, every=0.2)
    await eventually(lambda: all_events_seen(stack.tap, ids), within=30)  # none lost
    to_done = time.monotonic() - outage_over
    await asyncio.sleep(1)  # time for a duplicate to show, if there were one
    return to_ready, to_done


def all_events_seen(tap: EventTap, ids: list[str]) -> bool:
    seen = {(e.subject, e.type) for e in tap.seen}
    return all((a, f"org.sagecontinuum.ecr.{k}.v1") in seen for a in ids for k in OUT)


async def test_database_restart_with_apps_in_flight_heals_without_a_human(stack: Stack) -> None:
    assert (await readyz(stack))[0] == 200
    ids = await submit_all(stack, uuid.uuid4().hex[:6])
    await eventually(lambda: submitted(stack.tap, ids))
    assert stack.pg is not None
    await asyncio.to_thread(stack.pg.stop)
    stack.answering.set()  # the results arrive while the ECR cannot reach its database
    await asyncio.sleep(4)  # longer than the stall threshold
    status, failed = await readyz(stack)
    assert status == 503 and "_db_ready" in failed, failed
    await asyncio.to_thread(stack.pg.start)
    to_ready, to_done = await recover(stack, ids, time.monotonic())

    assert_each_event_once(stack.tap, ids)
    print(
        f"\ndatabase restart: ready after {to_ready:.1f} s, {APPS} apps in review after {to_done:.1f} s"
    )


async def test_broker_loss_with_apps_in_flight_heals_without_a_human(stack: Stack) -> None:
    assert (await readyz(stack))[0] == 200
    ids = await submit_all(stack, uuid.uuid4().hex[:6])
    await eventually(lambda: submitted(stack.tap, ids))
    assert stack.broker is not None
    await stack.broker.close()
    stack.answering.set()  # the results wait in the ECR's queue while it is cut off
    await asyncio.sleep(4)
    status, failed = await readyz(stack)
    assert status == 503 and "_bus_ready" in failed, failed
    await stack.broker.open()
    to_ready, to_done = await recover(stack, ids, time.monotonic())

    assert_each_event_once(stack.tap, ids)
    print(
        f"\nbroker loss: ready after {to_ready:.1f} s, {APPS} apps in review after {to_done:.1f} s"
    )


@dataclass
class EcrProcess:
    """`python -m sage_ecr` in its own process group, as a pod runs it."""

    config: Config
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.config.port}"

    def start(self) -> None:
        env = {"PATH": os.environ["PATH"]}
        for name, value in self.config.model_dump().items():
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            text = json.dumps(value) if isinstance(value, list | dict) else str(value)
            env[f"SAGE_ECR_{name.upper()}"] = text
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sage_ecr"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


@pytest.fixture
async def ecr_process(
    database_url: str,
    amqp_url: str,
    auth_settings: Callable[[str], dict[str, str]],
    make_user: MakeUser,
    tmp_path: Path,
) -> AsyncIterator[tuple[Stack, EcrProcess]]:
    s = uuid.uuid4().hex[:8]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = Config(
        port=port,
        database_url=database_url,
        db_schema=f"ecr_kill_{s}",
        amqp_url=amqp_url,
        exchange=f"test.faults.{s}",
        consumer_queue=f"test.faults.{s}.ecr",
        outbox_poll_seconds=0.2,
        **auth_settings("ecr-api"),
    )
    process = EcrProcess(config, tmp_path / "ecr.log")
    try:
        async with EventTap(amqp_url, config.exchange, OUT) as tap, aiohttp.ClientSession() as http:
            answering = asyncio.Event()
            player = asyncio.create_task(
                play_builder_and_profiler(amqp_url, config.exchange, tap, answering)
            )
            stack = Stack(process, None, None, tap, await make_user(f"kill{s}"), http, answering)
            try:
                yield stack, process
            finally:
                player.cancel()
                await asyncio.gather(player, return_exceptions=True)
    finally:
        process.kill()
        await delete_topology(
            amqp_url, exchanges=[config.exchange], queues=queue_names(config.consumer_queue)
        )


async def test_ecr_killed_with_apps_in_flight_heals_once_restarted(
    ecr_process: tuple[Stack, EcrProcess],
) -> None:
    stack, process = ecr_process
    process.start()

    async def ready() -> bool:
        try:
            return (await readyz(stack))[0] == 200
        except aiohttp.ClientError:
            return False

    await eventually(ready, within=60, every=0.1)
    ids = await submit_all(stack, uuid.uuid4().hex[:6])
    await eventually(lambda: submitted(stack.tap, ids))
    process.kill()  # kill -9, as the OOM killer or a node failure would
    stack.answering.set()  # the results wait in its queue
    await asyncio.sleep(1)
    assert not await ready()
    process.start()  # the orchestrator (Kubernetes, `make run`) starts it again
    to_ready, to_done = await recover(stack, ids, time.monotonic())

    assert_each_event_once(stack.tap, ids)
    print(
        f"\nECR kill -9: ready after {to_ready:.1f} s, {APPS} apps in review after {to_done:.1f} s"
    )
