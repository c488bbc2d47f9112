"""The pipeline heals without a human: 20 apps in flight through the ECR API while its database
restarts, the broker restarts, its broker connection is lost, it is killed (-9) and started again, or the auth service
is killed (-9) and started again, all reach review with each event once and an exact history, and
the affected service's readiness is out (503, or nothing answering for a killed process) while the
fault lasts and 200 after: `Readiness` polls `/readyz` the whole time.

The ECR API runs on a private Postgres cluster that the test stops and starts, and reaches the
broker through a proxy that the test cuts (the broker runs on, the ECR API alone is cut off), or
runs with the played workers and the tap on a private RabbitMQ node that the test restarts; the builder and profiler are played by the test
(tests/support/pipeline_play.py; tests/faults/test_faults_workers.py kills the real ones).
Each fault prints its time to recover (outage over -> ready, and -> every app in review), which
`make bench BENCH_ARGS=recovery` reports beside the fault-free time of the same work.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from sage_auth.config import Config as AuthConfig
from sage_common.bus import queue_names
from sage_ecr.config import Config
from tests.fixtures.auth import MakeUser
from tests.fixtures.postgres import PrivatePostgres
from tests.fixtures.rabbitmq import PrivateRabbitMQ
from tests.support.bus import TcpProxy, delete_topology, eventually
from tests.support.ecr import EventTap, app_spec, start_ecr
from tests.support.faults import DOWN, Readiness, ServiceProcess
from tests.support.pipeline_play import OUT, Apps, play
from tests.support.ports import free_port

APPS = 20
Playing = Callable[..., Awaitable["Stack"]]


@dataclass
class Stack:
    url: str  # the ECR API
    apps: Apps
    answering: asyncio.Event  # the played builder and profiler answer only once it is set
    http: aiohttp.ClientSession
    pg: PrivatePostgres | None = None
    broker: TcpProxy | None = None


@pytest.fixture
async def playing(amqp_url: str) -> AsyncIterator[Playing]:
    """`start(url, exchange, token, http, broker=)` -> a Stack whose builder and profiler are
    played, on the shared broker or `broker` (a private one the test restarts)."""
    opened: list[tuple[EventTap, asyncio.Task[None]]] = []

    async def start(
        url: str, exchange: str, token: str, http: aiohttp.ClientSession, broker: str = ""
    ) -> Stack:
        amqp = broker or amqp_url
        tap = await EventTap(amqp, exchange, OUT, durable=bool(broker)).__aenter__()
        answering = asyncio.Event()
        player = asyncio.create_task(play(amqp, exchange, tap, answering))
        opened.append((tap, player))
        return Stack(url, Apps(http, url, token, tap, []), answering, http)

    yield start
    for tap, player in opened:
        player.cancel()
        await asyncio.gather(player, return_exceptions=True)
        await tap.__aexit__()


def ecr_config(database_url: str, amqp_url: str, s: str, auth: dict[str, str]) -> Config:
    """The ECR API's settings here: quick outbox polls, a stall noticed after 3 s."""
    return Config(
        database_url=database_url,
        db_schema="ecr",
        amqp_url=amqp_url,
        exchange=f"test.faults.{s}",
        consumer_queue=f"test.faults.{s}.ecr",
        outbox_poll_seconds=0.2,
        stall_seconds=3.0,
        **auth,
    )


@pytest.fixture
async def stack(
    make_postgres: Callable[[], PrivatePostgres],
    amqp_url: str,
    auth_settings: Callable[[str], dict[str, str]],
    make_user: MakeUser,
    playing: Playing,
) -> AsyncIterator[Stack]:
    """The ECR API in this process, on a private Postgres and behind a broker proxy."""
    s = uuid.uuid4().hex[:8]
    pg = make_postgres()
    broker = TcpProxy()
    await broker.open()
    config = ecr_config(pg.dsn, broker.url(amqp_url), s, auth_settings("ecr-api"))
    ecr = await start_ecr(config)
    try:
        async with aiohttp.ClientSession() as http:
            stack = await playing(ecr.url, config.exchange, await make_user(f"f{s}"), http)
            stack.pg, stack.broker = pg, broker
            yield stack
    finally:
        await ecr.stop()
        await broker.close()
        await delete_topology(
            amqp_url, exchanges=[config.exchange], queues=queue_names(config.consumer_queue)
        )


@pytest.fixture
async def restarting(
    make_postgres: Callable[[], PrivatePostgres],
    make_rabbitmq: Callable[[], PrivateRabbitMQ],
    auth_settings: Callable[[str], dict[str, str]],
    make_user: MakeUser,
    playing: Playing,
) -> AsyncIterator[tuple[Stack, PrivateRabbitMQ]]:
    """The ECR API in this process, everything on a private broker that the test restarts."""
    s = uuid.uuid4().hex[:8]
    pg, rabbit = await asyncio.gather(
        asyncio.to_thread(make_postgres), asyncio.to_thread(make_rabbitmq)
    )
    config = ecr_config(pg.dsn, rabbit.url, s, auth_settings("ecr-api"))
    ecr = await start_ecr(config)
    try:
        async with aiohttp.ClientSession() as http:
            token = await make_user(f"r{s}")
            yield await playing(ecr.url, config.exchange, token, http, rabbit.url), rabbit
    finally:
        await ecr.stop()


async def in_flight(stack: Stack) -> None:
    """APPS apps submitted and announced; their builds not yet answered."""
    await stack.apps.submit_many(APPS, f"faults{uuid.uuid4().hex[:6]}")
    await eventually(stack.apps.submitted)


async def recover(stack: Stack, watch: Readiness, outage_over: float) -> tuple[float, float]:
    """Wait for every app in review; (seconds to ready, seconds to done) from `outage_over`."""
    await stack.apps.until_done()
    to_done = time.monotonic() - outage_over
    await asyncio.sleep(1)  # time for a duplicate to show, if there were one
    to_ready = watch.assert_ready_after(outage_over)
    await stack.apps.assert_exact()
    return to_ready, to_done


def report(fault: str, to_ready: float, to_done: float) -> None:
    """The line `make bench BENCH_ARGS=recovery` reads (`no fault [pipeline]` is its baseline)."""
    print(
        f"\n{fault} [pipeline]: ready after {to_ready:.1f} s, "
        f"{APPS} apps in review after {to_done:.1f} s"
    )


async def test_with_no_fault_the_same_work_is_done_exactly(stack: Stack) -> None:
    """The control, and the baseline of the recovery times: the same 20 apps, results
    released at once with nothing failing."""
    async with Readiness(stack.http, stack.url).watching() as watch:
        await in_flight(stack)
        released = time.monotonic()
        stack.answering.set()
        await stack.apps.until_done()
        took = time.monotonic() - released
        await asyncio.sleep(1)
        assert set(watch.between(0, time.monotonic())) == {200}
    await stack.apps.assert_exact()
    print(f"\nno fault [pipeline]: {APPS} apps in review after {took:.1f} s")


async def test_database_restart_with_apps_in_flight_heals_without_a_human(stack: Stack) -> None:
    async with Readiness(stack.http, stack.url).watching() as watch:
        await in_flight(stack)
        assert stack.pg is not None
        began = time.monotonic()
        await asyncio.to_thread(stack.pg.stop)
        stack.answering.set()  # the results arrive while the ECR cannot reach its database
        await asyncio.sleep(4)  # longer than the stall threshold
        async with stack.http.get(f"{stack.url}/readyz") as r:
            assert r.status == 503 and "_db_ready" in (await r.json())["failed"]
        restarting = time.monotonic()  # ready may answer 200 before start() returns
        await asyncio.to_thread(stack.pg.start)
        over = time.monotonic()
        watch.assert_out_during(began, restarting, expect=503)
        report("database restart", *await recover(stack, watch, over))


async def test_broker_restart_with_apps_in_flight_heals_without_a_human(
    restarting: tuple[Stack, PrivateRabbitMQ],
) -> None:
    stack, rabbit = restarting
    async with Readiness(stack.http, stack.url).watching() as watch:
        await in_flight(stack)
        began = time.monotonic()
        await asyncio.to_thread(rabbit.stop)  # every connection cut, durable queues kept on disk
        await asyncio.sleep(4)  # longer than the stall threshold
        async with stack.http.get(f"{stack.url}/readyz") as r:
            assert r.status == 503 and "_bus_ready" in (await r.json())["failed"]
        # The workers' answers go out once the broker is back (they cannot be sent before).
        stack.answering.set()
        restarting_at = time.monotonic()  # ready may answer 200 before start() returns
        await asyncio.to_thread(rabbit.start)
        over = time.monotonic()
        watch.assert_out_during(began, restarting_at, expect=503)
        report("broker restart", *await recover(stack, watch, over))


async def test_broker_loss_with_apps_in_flight_heals_without_a_human(stack: Stack) -> None:
    async with Readiness(stack.http, stack.url).watching() as watch:
        await in_flight(stack)
        assert stack.broker is not None
        began = time.monotonic()
        await stack.broker.close()
        stack.answering.set()  # the results wait in the ECR's queue while it is cut off
        await asyncio.sleep(4)
        async with stack.http.get(f"{stack.url}/readyz") as r:
            assert r.status == 503 and "_bus_ready" in (await r.json())["failed"]
        restarting = time.monotonic()  # ready may answer 200 before open() returns
        await stack.broker.open()
        over = time.monotonic()
        watch.assert_out_during(began, restarting, expect=503)
        report("broker loss", *await recover(stack, watch, over))


@pytest.fixture
async def ecr_process(
    database_url: str,
    amqp_url: str,
    auth_settings: Callable[[str], dict[str, str]],
    make_user: MakeUser,
    playing: Playing,
    tmp_path: Path,
) -> AsyncIterator[tuple[Stack, ServiceProcess]]:
    """`python -m sage_ecr` (not yet started), its builder and profiler played."""
    s = uuid.uuid4().hex[:8]
    config = Config(
        port=free_port(),
        database_url=database_url,
        db_schema=f"ecr_kill_{s}",
        amqp_url=amqp_url,
        exchange=f"test.faults.{s}",
        consumer_queue=f"test.faults.{s}.ecr",
        outbox_poll_seconds=0.2,
        **auth_settings("ecr-api"),
    )
    process = ServiceProcess("sage_ecr", "SAGE_ECR_", config, tmp_path / "ecr.log")
    try:
        async with aiohttp.ClientSession() as http:
            stack = await playing(process.url, config.exchange, await make_user(f"k{s}"), http)
            yield stack, process
    finally:
        process.kill()
        await delete_topology(
            amqp_url, exchanges=[config.exchange], queues=queue_names(config.consumer_queue)
        )


async def test_ecr_killed_with_apps_in_flight_heals_once_restarted(
    ecr_process: tuple[Stack, ServiceProcess],
) -> None:
    stack, process = ecr_process
    process.start()
    await process.ready(stack.http)
    async with Readiness(stack.http, stack.url).watching() as watch:
        await in_flight(stack)
        began = time.monotonic()
        process.kill()  # kill -9, as the OOM killer or a node failure would
        stack.answering.set()  # the results wait in its queue
        await asyncio.sleep(1.5)
        over = time.monotonic()
        process.start()  # the orchestrator (Kubernetes, `make run`) starts it again
        watch.assert_out_during(began, over, expect=DOWN, grace=0.2)
        report("ECR API kill -9", *await recover(stack, watch, over))


@pytest.fixture
async def auth_process(
    database_url: str,
    auth_key_dir: Path,
    service_secrets: dict[str, str],
    tmp_path: Path,
) -> AsyncIterator[ServiceProcess]:
    """`python -m sage_auth` on the session's database (a second replica of the session's auth
    service, so users made with `make_user` are known to it), started and ready."""
    own = secrets.token_urlsafe(32)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = AuthConfig(
        port=port,
        database_url=database_url,
        key_dir=str(auth_key_dir),
        service_clients={**service_secrets, "auth": own},
        client_secret=own,
        public_url=url,
        auth_url=url,
        registry_policy="local",
    )
    process = ServiceProcess("sage_auth", "SAGE_AUTH_", config, tmp_path / "auth.log")
    process.start()
    try:
        async with aiohttp.ClientSession() as http:
            await process.ready(http)
        yield process
    finally:
        process.kill()


async def test_auth_killed_with_apps_in_flight_heals_once_restarted(
    auth_process: ServiceProcess,
    database_url: str,
    amqp_url: str,
    service_secrets: dict[str, str],
    make_user: MakeUser,
    playing: Playing,
) -> None:
    """Half the apps are in flight when the auth service dies; the other half are submitted by
    a client (a new token, so no cached answer helps) that gets 503 + Retry-After, never 500,
    until the auth service is back."""
    s = uuid.uuid4().hex[:8]
    config = Config(
        database_url=database_url,
        db_schema=f"ecr_auth_{s}",
        amqp_url=amqp_url,
        exchange=f"test.faults.{s}",
        consumer_queue=f"test.faults.{s}.ecr",
        outbox_poll_seconds=0.2,
        auth_url=auth_process.url,
        client_id="ecr-api",
        client_secret=service_secrets["ecr-api"],
    )
    ecr = await start_ecr(config)
    try:
        async with aiohttp.ClientSession() as http:
            admin = await make_user(f"a{s}", admin=True)  # reads every app's status
            stack = await playing(ecr.url, config.exchange, admin, http)
            async with Readiness(http, auth_process.url).watching() as watch:
                first = [
                    await stack.apps.submit(app_spec(f"faults{s}", f"app{n}"))
                    for n in range(APPS // 2)
                ]
                began = time.monotonic()
                auth_process.kill()
                stack.answering.set()
                late = await make_user(f"late{s}")  # never introspected: the cache cannot help
                url = f"{ecr.url}/api/submit"
                headers = {"Authorization": f"sage {late}"}
                spec = app_spec(f"late{s}", "app0")
                async with http.post(url, json=spec, headers=headers) as r:
                    assert r.status == 503 and int(r.headers["Retry-After"]) > 0, await r.text()
                await asyncio.sleep(1)
                over = time.monotonic()
                auth_process.start()
                rest = [
                    await stack.apps.submit(app_spec(f"late{s}", f"app{n}"), token=late)
                    for n in range(APPS // 2)
                ]
                watch.assert_out_during(began, over, expect=DOWN, grace=0.2)
                assert len(first + rest) == APPS
                report("auth kill -9", *await recover(stack, watch, over))
    finally:
        await ecr.stop()
        await delete_topology(
            amqp_url, exchanges=[config.exchange], queues=queue_names(config.consumer_queue)
        )
