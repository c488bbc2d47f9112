"""A builder process killed mid-build, and a build that runs past its time.

The killed builder is a real `python -m sage_builder` process in its own process group, killed
with SIGKILL (its buildah with it, as when a pod dies); a second builder on the same queue gets
the redelivered message and the build completes once, with one result.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from sage_builder.app import make_builder
from sage_builder.service import Job, request_from_event
from sage_common.schemas import AppSource, AppSubmitted
from sage_common.web import POOL
from tests.fixtures.builder import log_has
from tests.support.builder import (
    GitServer,
    Harness,
    commit_all,
    config_env,
    delete_queues,
    free_port,
    read_log,
    running_builder,
    scratch_app,
    until,
)

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def git_server(tmp_path_factory):
    server = GitServer(tmp_path_factory.mktemp("git"))
    server.start()
    work = tmp_path_factory.mktemp("apps")
    scratch_app(work / "steady", "echo run-started; sleep 4; echo run-finished > /finished")
    commit_all(work / "steady", "a build that takes a few seconds")
    server.publish("steady", work / "steady")
    scratch_app(work / "endless", "echo endless-started; sleep 600")
    commit_all(work / "endless", "a build that never ends")
    server.publish("endless", work / "endless")
    yield server
    server.stop()


@pytest.fixture
def config(builder_config, tmp_path):
    return builder_config(tmp_path / "builder", uuid.uuid4().hex[:8])


async def ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as http:

        async def check() -> bool:
            assert proc.poll() is None, "the builder process exited"
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while not await check():
            assert loop.time() < deadline, "the builder process never became ready"
            await asyncio.sleep(0.1)


async def test_builder_killed_mid_build_is_redelivered_and_completes_once(
    config, amqp_url, git_server, s3_server, tmp_path
):
    proc = start_builder_process(config, tmp_path)
    try:
        async with Harness.open(amqp_url, config.exchange, git_server.url) as harness:
            await ready(config.port, proc)
            ident = f"tests/killed-{uuid.uuid4().hex[:6]}:1.0"
            build_id = await harness.submit(ident, "steady")
            started = await harness.events.wait(build_id, "build.started")
            await until(log_has(s3_server, started.data["log_location"], "run-started"))
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            assert harness.events.of(build_id, "build.done") == []

            second = config.model_copy(update={"port": free_port()})
            async with running_builder(second) as app:
                done = await harness.events.done(build_id, within=120)
                assert done.status == "success", (done.error_class, done.error, done.log_tail)
                pool = app[POOL]
                await until_outbox_sent(pool)
            conn = await asyncpg.connect(config.database_url.get_secret_value())
            try:
                rows = await conn.fetch(
                    f"SELECT status, attempts FROM {config.db_schema}.builds WHERE build_id = $1",
                    build_id,
                )
            finally:
                await conn.close()
            assert [tuple(r) for r in rows] == [("success", 2)]  # claimed twice, finished once
            assert len(harness.events.of(build_id, "build.done")) == 1
            assert len(harness.events.of(build_id, "build.started")) == 1
            assert "run-started" in read_log(s3_server.client(), done.log_location)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        await delete_queues(amqp_url, config)


async def until_outbox_sent(pool) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL"):
        assert loop.time() < deadline, "the outbox was not relayed"
        await asyncio.sleep(0.05)


async def test_build_past_its_time_is_stopped_as_timeout(config, git_server, s3_server):
    builder = make_builder(config.model_copy(update={"build_timeout_seconds": 8.0}))
    data = AppSubmitted(
        app_id=f"tests/endless-{uuid.uuid4().hex[:6]}:1.0",
        build_id=str(uuid.uuid4()),
        source=AppSource(url=git_server.url("endless")),
        submitter="tester",
    )
    request = request_from_event(data)
    done = await builder.run(request, Job(request.build_id, request.app_id))
    assert (done.status, done.error_class) == ("failure", "timeout")
    assert "8s" in done.error
    assert done.duration_seconds < 30
    assert any("endless-started" in line for line in done.log_tail)
    assert not processes_running(b"endless-started; sleep 600")


def processes_running(marker: bytes) -> list[str]:
    """Pids whose command line holds `marker` (a RUN step left behind)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker in (proc / "cmdline").read_bytes():
                found.append(proc.name)
        except OSError:
            continue
    return found


def start_builder_process(config, tmp_path: Path) -> subprocess.Popen[bytes]:
    """`python -m sage_builder` with `config` as its environment, in its own process group."""
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **config_env(config)}
    with (tmp_path / "builder.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "sage_builder"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
