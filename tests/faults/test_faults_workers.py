"""The real builder and the real profiler, each killed (-9) mid-work with 20 apps in flight
through the ECR API: once started again, the work it was doing is picked up again (the redelivered
event) and all 20 apps reach review, each event once, histories exact; its readiness is gone while
it is dead and 200 after. The kill comes once half the apps are in review: the time that half
took, fault-free, is the baseline the recovery bench compares the rest with. The same 20 builds
also run through an S3 restart (the builder's logs are the pipeline's use of S3), and each
worker through a restart of its own Postgres (a private cluster) mid-work: readiness 503 while it
is down, the work and its outbox carried on by themselves once it is back.

The killed service is a real `python -m sage_builder` (buildah, pushing to a registry that trusts
the auth service) or `python -m sage_profiler` (the Docker engine, the `load` test app); the ECR
API runs in this process and the test plays the other worker (tests/support/pipeline_play.py).
Real builds and runs of 20 apps take longer than the rest of the fault suite: `slow`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import docker
import pytest
from pydantic import SecretStr

from sage_builder.config import Config as BuilderConfig
from sage_common.bus import queue_names
from sage_common.schemas import BuildDone
from sage_common.work import RETRY_DELAYS
from sage_ecr.config import Config
from sage_profiler.config import Config as ProfilerConfig
from tests.fixtures.auth import MakeUser
from tests.fixtures.builder import BuilderConfig as MakeBuilderConfig
from tests.fixtures.postgres import PrivatePostgres
from tests.fixtures.s3 import S3Server
from tests.support.builder import GitServer, commit_all, delete_queues, read_log, scratch_app
from tests.support.bus import delete_topology, eventually
from tests.support.ecr import EventTap, start_ecr
from tests.support.faults import DOWN, Readiness, ServiceProcess
from tests.support.pipeline_play import OUT, Apps, play
from tests.support.ports import free_port

pytestmark = pytest.mark.slow
APPS = 20
MiB = 1 << 20


@pytest.fixture(scope="module")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    server = GitServer(tmp_path_factory.mktemp("git"))
    server.start()
    work = tmp_path_factory.mktemp("apps") / "steady"
    scratch_app(work, "echo run-started; sleep 3; echo run-finished > /finished")
    commit_all(work, "a build that takes a few seconds (once: its layers are cached after)")
    server.publish("steady", work)
    yield server
    server.stop()


class Run:
    """The ECR API in this process, the played worker, and the apps sent through."""

    def __init__(self, http: aiohttp.ClientSession, url: str, token: str, tap: EventTap) -> None:
        self.apps = Apps(http, url, token, tap, [])
        self.answering = asyncio.Event()


@pytest.fixture
async def ecr_run(
    database_url: str,
    amqp_url: str,
    auth_settings: Callable[[str], dict[str, str]],
    make_user: MakeUser,
) -> AsyncIterator[Callable[..., Any]]:
    """`start(exchange, **play_options)` -> a Run on `exchange`, torn down after the test."""
    stops: list[Callable[[], Any]] = []

    async def start(exchange: str, **options: Any) -> Run:
        s = uuid.uuid4().hex[:8]
        config = Config(
            database_url=database_url,
            db_schema=f"ecr_w_{s}",
            amqp_url=amqp_url,
            exchange=exchange,
            consumer_queue=f"{exchange}.ecr",
            outbox_poll_seconds=0.2,
            **auth_settings("ecr-api"),
        )
        ecr = await start_ecr(config)
        http = aiohttp.ClientSession()
        tap = await EventTap(amqp_url, exchange, OUT).__aenter__()
        run = Run(http, ecr.url, await make_user(f"w{s}"), tap)
        player = asyncio.create_task(play(amqp_url, exchange, tap, run.answering, **options))
        run.answering.set()

        async def stop() -> None:
            player.cancel()
            await asyncio.gather(player, return_exceptions=True)
            await tap.__aexit__()
            await ecr.stop()
            await http.close()
            await delete_topology(
                amqp_url, exchanges=[exchange], queues=queue_names(config.consumer_queue)
            )

        stops.append(stop)
        return run

    yield start
    for stop in reversed(stops):
        await stop()


def report(fault: str, kind: str, to_ready: float, to_done: float, baseline: float) -> None:
    """The recovery line (`make bench BENCH_ARGS=recovery` reads it) and the fault-free time
    of the same amount of work, measured in the same run."""
    rest = APPS - APPS // 2
    print(
        f"\n{fault} [{kind}]: ready after {to_ready:.1f} s, "
        f"{rest} apps in review after {to_done:.1f} s"
    )
    print(f"\nno fault [{kind}]: {rest} apps in review after {baseline:.1f} s")


def reviewed(run: Run) -> int:
    return sum(1 for e in run.apps.tap.seen if e.routing_key == "review.requested")


async def through_fault(
    process: ServiceProcess,
    run: Run,
    submitted_at: float,
    mid_work: Callable[[], Any],
    outage: Callable[[], Awaitable[float]],
    *,
    expect: int,
    grace: float = 1.0,
) -> tuple[float, float, float]:
    """Once half the apps are in review (the fault-free baseline: seconds since
    `submitted_at`), run `outage()` as soon as `mid_work()` is true: it makes the fault and
    returns when it began to end it (readiness may be back before it returns). Readiness must
    answer `expect` during the fault (from `grace` s in) and 200 after; every app must reach
    review, exactly. (to ready, to all in review, baseline)."""
    http = run.apps.http
    async with Readiness(http, process.url).watching() as watch:
        await eventually(lambda: reviewed(run) >= APPS // 2, within=180, every=0.1)
        baseline = time.monotonic() - submitted_at
        await eventually(mid_work, within=60, every=0.05)
        began = time.monotonic()
        ending = await outage()
        over = time.monotonic()
        watch.assert_out_during(began, ending, expect=expect, grace=grace)
        await run.apps.until_done(within=240)
        to_done = time.monotonic() - over
        await asyncio.sleep(1)  # time for a duplicate to show, if there were one
        to_ready = watch.assert_ready_after(over)
    await run.apps.assert_exact()
    return to_ready, to_done, baseline


async def kill_and_restart(
    process: ServiceProcess, run: Run, submitted_at: float, mid_work: Callable[[], Any]
) -> tuple[float, float, float]:
    """`process` killed (-9) mid-work and started again a second later, as an orchestrator
    would; nothing answers meanwhile."""

    async def outage() -> float:
        process.kill()
        await asyncio.sleep(1)
        ending = time.monotonic()
        process.start()
        return ending

    return await through_fault(process, run, submitted_at, mid_work, outage, expect=DOWN, grace=0.2)


async def database_restart(
    pg: PrivatePostgres,
    process: ServiceProcess,
    run: Run,
    submitted_at: float,
    mid_work: Callable[[], Any],
) -> tuple[float, float, float]:
    """The worker's own Postgres stopped mid-work, for longer than the stall threshold, and
    started again; readiness 503 meanwhile."""

    async def outage() -> float:
        await asyncio.to_thread(pg.stop)
        await asyncio.sleep(4)
        ending = time.monotonic()
        await asyncio.to_thread(pg.start)
        return ending

    return await through_fault(process, run, submitted_at, mid_work, outage, expect=503)


@contextlib.asynccontextmanager
async def builds_in_flight(
    ecr_run: Callable[..., Any],
    config: BuilderConfig,
    git_server: GitServer,
    amqp_url: str,
    tmp_path: Path,
) -> AsyncIterator[tuple[ServiceProcess, Run, float]]:
    """A real `python -m sage_builder` on `config`, the 20 apps submitted to it through the ECR
    API: (the builder, the run, when they were submitted)."""
    run = await ecr_run(config.exchange, builder=False, profiler=True)
    process = ServiceProcess("sage_builder", "SAGE_BUILDER_", config, tmp_path / "builder.log")
    process.start()
    try:
        await process.ready(run.apps.http)
        source = {"url": git_server.url("steady"), "branch": "main"}
        source["architectures"] = ["linux/amd64"]
        submitted_at = time.monotonic()
        await run.apps.submit_many(APPS, f"faultsb{uuid.uuid4().hex[:8]}", source=source)
        yield process, run, submitted_at
    finally:
        process.kill()
        await delete_queues(amqp_url, config)


async def test_builder_killed_mid_build_with_apps_in_flight_heals_once_restarted(
    ecr_run: Callable[..., Any],
    builder_config: MakeBuilderConfig,
    git_server: GitServer,
    amqp_url: str,
    tmp_path: Path,
) -> None:
    config: BuilderConfig = builder_config(tmp_path / "builder", uuid.uuid4().hex[:8])
    config = config.model_copy(update={"outbox_poll_seconds": 0.2})
    async with builds_in_flight(ecr_run, config, git_server, amqp_url, tmp_path) as at_work:
        process, run, submitted_at = at_work
        # The killed builder's buildah dies with it (the sandbox's parent-death signal), so the
        # resumed build has the layer cache to itself: every app goes through.
        times = await kill_and_restart(process, run, submitted_at, lambda: mid_build(run.apps.tap))
        killed = await builder_rows(config, "SELECT build_id FROM builds WHERE attempts > 1")
        assert killed, "no build was under way when the builder was killed"
        report("builder kill -9", "builder", *times)


async def test_builder_database_restart_mid_build_heals_without_a_human(
    ecr_run: Callable[..., Any],
    builder_config: MakeBuilderConfig,
    make_postgres: Callable[[], PrivatePostgres],
    git_server: GitServer,
    amqp_url: str,
    tmp_path: Path,
) -> None:
    pg = await asyncio.to_thread(make_postgres)
    config: BuilderConfig = builder_config(tmp_path / "builder", uuid.uuid4().hex[:8])
    config = config.model_copy(
        update={"outbox_poll_seconds": 0.2, "stall_seconds": 3.0, "database_url": SecretStr(pg.dsn)}
    )
    async with builds_in_flight(ecr_run, config, git_server, amqp_url, tmp_path) as at_work:
        process, run, submitted_at = at_work
        tap = run.apps.tap
        times = await database_restart(pg, process, run, submitted_at, lambda: mid_build(tap))
        done = [e.parse_data(BuildDone) for e in tap.seen if e.routing_key == "build.done"]
        assert all(d.status == "success" for d in done), [d.error for d in done]
        report("database restart", "builder-db", *times)


def mid_build(tap: EventTap) -> bool:
    """A build started and not done: the builder is at work."""
    started = {e.data["build_id"] for e in tap.seen if e.routing_key == "build.started"}
    done = {e.data["build_id"] for e in tap.seen if e.routing_key == "build.done"}
    return bool(started - done)


async def builder_rows(config: BuilderConfig, sql: str) -> list[str]:
    conn = await asyncpg.connect(config.database_url.get_secret_value())
    try:
        await conn.execute(f"SET search_path TO {config.db_schema}")
        return [r[0] for r in await conn.fetch(sql)]
    finally:
        await conn.close()


def running_builds(ours: set[str]) -> set[str]:
    """Those of `ours` (build ids) with a profiler's container running now (it labels each;
    the engine is shared with other tests)."""
    client = docker.from_env()
    try:
        found = client.containers.list(filters={"label": "org.sagecontinuum.build"})
        return {c.labels["org.sagecontinuum.build"] for c in found} & ours
    finally:
        client.close()


def profiler_config(
    exchange: str, database_url: str, amqp_url: str, tmp_path: Path, auth: dict[str, str]
) -> ProfilerConfig:
    return ProfilerConfig(
        port=free_port(),
        database_url=database_url,
        db_schema=f"profiler_faults_{uuid.uuid4().hex[:8]}",
        amqp_url=amqp_url,
        exchange=exchange,
        queue=f"{exchange}.profiler",
        cancel_queue=f"{exchange}.profiler-cancel",
        outbox_poll_seconds=0.2,
        stall_seconds=3.0,
        pull_policy="never",
        memory_limit_bytes=256 * MiB,
        cpu_limit=1.0,
        default_repetitions=1,
        max_parallel_profiles=2,
        work_dir=tmp_path / "work",
        **auth,
    )


async def profiled_run(ecr_run: Callable[..., Any], exchange: str, load_image: str) -> Run:
    """A run whose played builder reports the `load` test app as each app's image."""

    def made_by_builder(app_id: str, build_id: str) -> BuildDone:
        return BuildDone(
            app_id=app_id,
            build_id=build_id,
            status="success",
            image=load_image,
            duration_seconds=1.0,
            testing={"args": ["mem=8", "sleep=1"], "repetitions": 1, "concurrency": 1},
        )

    return await ecr_run(exchange, builder=True, profiler=False, make_build_done=made_by_builder)


def profiles_under_way(run: Run, under_way: set[str]) -> Callable[[], Any]:
    """A `mid_work` check: a profile's container is running; adds its build ids to `under_way`."""

    async def mid_run() -> bool:
        seen = run.apps.tap.seen
        ours = {str(e.data["build_id"]) for e in seen if e.routing_key == "build.done"}
        under_way.update(await asyncio.to_thread(running_builds, ours))
        return bool(under_way)

    return mid_run


async def test_profiler_killed_mid_run_with_apps_in_flight_heals_once_restarted(
    ecr_run: Callable[..., Any],
    load_image: str,
    database_url: str,
    amqp_url: str,
    auth_settings: Callable[[str], dict[str, str]],
    tmp_path: Path,
) -> None:
    exchange = f"test.faults.{uuid.uuid4().hex[:8]}"
    config = profiler_config(exchange, database_url, amqp_url, tmp_path, auth_settings("profiler"))
    run = await profiled_run(ecr_run, exchange, load_image)
    process = ServiceProcess("sage_profiler", "SAGE_PROFILER_", config, tmp_path / "prof.log")
    process.start()
    under_way: set[str] = set()
    try:
        await process.ready(run.apps.http)
        submitted_at = time.monotonic()
        await run.apps.submit_many(APPS, f"faultsp{uuid.uuid4().hex[:8]}")
        mid_run = profiles_under_way(run, under_way)
        times = await kill_and_restart(process, run, submitted_at, mid_run)
        # The work cut off was done again after the restart, and reported once.
        for build_id in under_way:
            reports = [
                e
                for e in run.apps.tap.seen
                if e.routing_key == "profile.done" and e.data["build_id"] == build_id
            ]
            assert len(reports) == 1 and reports[0].data["status"] == "passed", reports
        report("profiler kill -9", "profiler", *times)
    finally:
        process.kill()
        await delete_profiler_queues(amqp_url, config)


async def test_profiler_database_restart_mid_run_heals_without_a_human(
    ecr_run: Callable[..., Any],
    load_image: str,
    make_postgres: Callable[[], PrivatePostgres],
    amqp_url: str,
    auth_settings: Callable[[str], dict[str, str]],
    tmp_path: Path,
) -> None:
    pg = await asyncio.to_thread(make_postgres)
    exchange = f"test.faults.{uuid.uuid4().hex[:8]}"
    config = profiler_config(exchange, pg.dsn, amqp_url, tmp_path, auth_settings("profiler"))
    run = await profiled_run(ecr_run, exchange, load_image)
    process = ServiceProcess("sage_profiler", "SAGE_PROFILER_", config, tmp_path / "prof.log")
    process.start()
    try:
        await process.ready(run.apps.http)
        submitted_at = time.monotonic()
        await run.apps.submit_many(APPS, f"faultspd{uuid.uuid4().hex[:8]}")
        mid_run = profiles_under_way(run, set())
        times = await database_restart(pg, process, run, submitted_at, mid_run)
        done = [e for e in run.apps.tap.seen if e.routing_key == "profile.done"]
        assert all(e.data["status"] == "passed" for e in done), [e.data for e in done]
        report("database restart", "profiler-db", *times)
    finally:
        process.kill()
        await delete_profiler_queues(amqp_url, config)


async def delete_profiler_queues(amqp_url: str, config: ProfilerConfig) -> None:
    await delete_topology(
        amqp_url,
        exchanges=[config.exchange],
        queues=[*queue_names(config.queue, RETRY_DELAYS), *queue_names(config.cancel_queue)],
    )


async def test_s3_restart_under_real_builds_loses_no_build_and_no_log(
    ecr_run: Callable[..., Any],
    builder_config: MakeBuilderConfig,
    make_s3_server: Callable[[], S3Server],
    git_server: GitServer,
    amqp_url: str,
    tmp_path: Path,
) -> None:
    """The pipeline's use of S3 is the builder's logs. With its S3 server restarted while builds
    run (half the 20 apps in review, fault-free: the baseline), every build still succeeds (a
    log store outage must not fail a build), every log ends in S3 whole once S3 is back, and the
    builder stays ready: it makes progress all along, so taking it out of service would lie."""
    s3 = make_s3_server()
    s = uuid.uuid4().hex[:8]
    config: BuilderConfig = builder_config(tmp_path / "builder", s)
    config = config.model_copy(
        update={
            "outbox_poll_seconds": 0.2,
            "s3_endpoint": s3.endpoint,
            "s3_access_key": s3.access_key,
            "s3_secret_key": SecretStr(s3.secret_key),
        }
    )
    run = await ecr_run(config.exchange, builder=False, profiler=True)
    process = ServiceProcess("sage_builder", "SAGE_BUILDER_", config, tmp_path / "builder.log")
    process.start()
    try:
        http = run.apps.http
        await process.ready(http)
        source = {"url": git_server.url("steady"), "branch": "main"}
        source["architectures"] = ["linux/amd64"]
        tap = run.apps.tap
        async with Readiness(http, process.url).watching() as watch:
            submitted_at = time.monotonic()
            await run.apps.submit_many(APPS, f"faultss{s}", source=source)
            await eventually(lambda: reviewed(run) >= APPS // 2, within=180, every=0.1)
            baseline = time.monotonic() - submitted_at
            await eventually(lambda: mid_build(tap), within=60, every=0.05)
            began = time.monotonic()
            await asyncio.to_thread(s3.stop)
            await asyncio.sleep(4)
            await asyncio.to_thread(s3.start)
            over = time.monotonic()
            await run.apps.until_done(within=240)
            to_done = time.monotonic() - over
            assert set(watch.between(began, time.monotonic())) == {200}
        await run.apps.assert_exact()
        done = [e.parse_data(BuildDone) for e in tap.seen if e.routing_key == "build.done"]
        assert all(d.status == "success" for d in done), [d.error for d in done]
        client = s3.client()

        def whole(d: BuildDone) -> bool:  # the log ends with the line naming the pushed image
            assert d.log_location is not None, d
            last = read_log(client, d.log_location).rstrip().splitlines()[-1]
            return last == f"build succeeded: {d.image}@{d.index_digest}"

        # A log cut short by the outage is completed once S3 is back (retried by the builder).
        await eventually(lambda: asyncio.to_thread(lambda: all(map(whole, done))), within=60)
        rest = APPS - APPS // 2
        print(
            f"\nS3 restart [build-logs]: ready throughout, {rest} apps in review after {to_done:.1f} s"
        )
        print(f"\nno fault [build-logs]: {rest} apps in review after {baseline:.1f} s")
    finally:
        process.kill()
        await delete_queues(amqp_url, config)
