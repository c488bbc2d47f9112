"""Live build logs through the ECR API: the builder's real log writer on a real S3 server, the real
ECR API, auth and broker, and the `sage` command line following a build as it runs.

The log is the builder's own `BuildLog` writing to its bucket as in a build; the events a builder
and profiler send are published on the test's exchange."""

from __future__ import annotations

import asyncio
import io
import uuid
from pathlib import Path
from xml.etree import ElementTree

import pytest

from sage_builder.buildlog import BuildLog, S3LogSink, Scrubber
from sage_common.bus import Bus
from sage_common.events import make_event
from sage_common.schemas import BuildDone, BuildStarted, ProfileDone, ProfileSeries
from sage_common.schemas import TestRun as RunResult
from sage_ecr.config import Config
from tests.fixtures.auth import call, sage_header
from tests.support.bus import eventually
from tests.support.cli import run_sage
from tests.support.ecr import app_spec, builder_bus, running_ecr_on_bus, start_ecr
from tests.support.names import sfx

MiB = 1 << 20


def ecr_config(database_url, auth_settings, s3, **settings) -> Config:
    s = sfx()
    return Config(
        database_url=database_url,
        db_schema=f"ecr_logs_{s}",
        s3_endpoint=s3.endpoint,
        s3_access_key=s3.access_key,
        s3_secret_key=s3.secret_key,
        s3_region=s3.region,
        build_log_bucket=f"logs-{s}",
        **auth_settings("ecr-api"),
        **settings,
    )


@pytest.fixture(scope="module")
async def ecr(database_url, amqp_url, auth_settings, s3_server):
    s = sfx()
    config = ecr_config(
        database_url,
        auth_settings,
        s3_server,
        amqp_url=amqp_url,
        exchange=f"test.ecrlogs.{s}",
        consumer_queue=f"test.ecrlogs.{s}.pipeline",
        outbox_poll_seconds=0.2,
        build_log_chunk_bytes=4096,  # a follower of a long log reads it in several answers
    )
    async with running_ecr_on_bus(config) as running:
        yield running


@pytest.fixture(scope="module")
async def bus(ecr, amqp_url):
    async with builder_bus(ecr, amqp_url) as b:
        yield b


class Build:
    """A submitted version, its current build, and the builder's log writer for it."""

    def __init__(self, ecr, http, token: str, ns: str, name: str = "counter") -> None:
        self.ecr, self.http, self.token = ecr, http, token
        self.ns, self.name, self.version = ns, name, "1.0.0"
        self.app_id = f"{ns}/{name}:{self.version}"
        self.path = f"{ecr.url}/api/apps/{ns}/{name}/{self.version}"
        self.build_id = ""

    @property
    def key(self) -> str:
        """Where the builder writes the log (docs/builder.md)."""
        return f"builds/{self.ns}/{self.name}/{self.version}/{self.build_id}.log"

    @property
    def location(self) -> str:
        return f"s3://{self.ecr.config.build_log_bucket}/{self.key}"

    async def submit(self) -> Build:
        spec = app_spec(self.ns, self.name, self.version)
        status, body = await call(
            self.http, "POST", f"{self.ecr.url}/api/submit", token=self.token, json=spec
        )
        assert status == 200, body
        status, logs = await call(self.http, "GET", self.path + "/logs", token=self.token)
        assert status == 200 and logs["finished"] is False, logs
        self.build_id = logs["build_id"]
        return self

    def log(self, s3) -> BuildLog:
        sink = S3LogSink(s3.client(), self.ecr.config.build_log_bucket)
        return BuildLog(sink, self.key, Scrubber(), flush_seconds=0.05)

    async def text(self, offset: int = 0, token: str | None = "owner") -> tuple[int, bytes, dict]:
        headers = sage_header(self.token if token == "owner" else token) if token else {}
        async with self.http.get(
            self.path + "/logs", params={"format": "text", "offset": offset}, headers=headers
        ) as resp:
            return resp.status, await resp.read(), dict(resp.headers)

    async def finish(self, bus: Bus, *, log_location: str | None, tail: list[str]) -> None:
        """The builder's build.started and build.done; returns once the ECR recorded the end."""
        started = BuildStarted(
            app_id=self.app_id, build_id=self.build_id, started_at="2030-01-01T00:00:00Z"
        )
        done = BuildDone(
            app_id=self.app_id,
            build_id=self.build_id,
            status="success",
            image=f"127.0.0.1:5000/{self.ns}/{self.name}:{self.version}",
            index_digest="sha256:" + "a" * 64,
            log_location=log_location,
            log_tail=tail,
        )
        for data in (started, done):
            await bus.publish(make_event("test-builder", data, subject=self.app_id))

        async def recorded() -> bool:
            _, _, headers = await self.text(10**9)
            return headers.get("X-Build-Complete") == "true"

        await eventually(recorded)


async def follow(build: Build, got: bytearray, reads: list[tuple[int, bool]]) -> None:
    """Read the text log as a follower does: from the bytes it has, until the build is done."""
    offset = 0
    while True:
        status, body, headers = await build.text(offset)
        assert status == 200, body
        assert headers["Content-Type"].startswith("text/plain")
        assert int(headers["X-Log-Offset"]) == offset
        got += body
        offset += len(body)
        assert int(headers["X-Log-Next-Offset"]) == offset
        complete = headers["X-Build-Complete"] == "true"
        reads.append((len(body), complete))
        if complete and offset >= int(headers["X-Log-Size"]):
            return
        if not body:
            await asyncio.sleep(0.02)


def lines(n: int) -> list[str]:
    return [f"STEP {i}/{n}: RUN /bin/busybox echo {'x' * (i % 37)} ✓" for i in range(n)]


async def test_a_follower_gets_each_byte_once_in_order_until_the_build_is_done(
    ecr, http, people, bus, s3_server
):
    build = await Build(ecr, http, people["owner"], f"lab{sfx()}").submit()
    status, body, headers = await build.text()
    assert (status, body, headers["X-Build-Complete"]) == (200, b"", "false")  # no log yet
    assert headers["X-Build-Id"] == build.build_id and headers["X-Build-Number"] == "1"

    got, reads = bytearray(), []
    follower = asyncio.create_task(follow(build, got, reads))
    written = lines(400)
    async with build.log(s3_server) as log:
        for i, line in enumerate(written):
            log(line)
            if i % 25 == 0:
                await asyncio.sleep(0.05)  # the writer uploads while the follower reads
    # The log object is now marked complete, but the build is not over until build.done.
    _, _, headers = await build.text(len(got))
    assert headers["X-Build-Complete"] == "false"
    assert not follower.done()

    await build.finish(bus, log_location=build.location, tail=written[-3:])
    await asyncio.wait_for(follower, 30)

    expected = "".join(line + "\n" for line in written).encode()
    assert bytes(got) == expected
    assert sum(1 for n, complete in reads if n and not complete) >= 2  # read live, in pieces
    assert max(n for n, _ in reads) <= 4096
    # A follower that is up to date gets nothing more, and learns that the build is over.
    status, body, headers = await build.text(len(expected))
    assert (status, body, headers["X-Build-Complete"]) == (200, b"", "true")
    assert headers["X-Log-Size"] == str(len(expected))


async def test_a_running_build_is_read_where_its_build_started_said_the_log_is(
    ecr, http, people, bus, s3_server
):
    build = await Build(ecr, http, people["owner"], f"lab{sfx()}").submit()
    # Not where the ECR would look by itself, but in the builder's bucket, under this version.
    key = f"builds/{build.ns}/{build.name}/{build.version}/elsewhere-{build.build_id}.log"
    location = f"s3://{ecr.config.build_log_bucket}/{key}"
    started = BuildStarted(
        app_id=build.app_id,
        build_id=build.build_id,
        started_at="2030-01-01T00:00:00Z",
        log_location=location,
    )
    await bus.publish(make_event("test-builder", started, subject=build.app_id))

    async def recorded() -> bool:
        _, answer = await call(http, "GET", build.path + "/logs", token=people["owner"])
        return answer["log_location"] == location

    await eventually(recorded)
    status, answer = await call(http, "GET", build.path + "/logs", token=people["owner"])
    assert answer["finished"] is False  # still running: the location came from build.started
    sink = S3LogSink(s3_server.client(), ecr.config.build_log_bucket)
    async with BuildLog(sink, key, Scrubber(), flush_seconds=0.05) as log:
        log("STEP 1/1: written where the builder said")
    status, body, headers = await build.text()
    assert (status, body) == (200, b"STEP 1/1: written where the builder said\n")
    assert headers["X-Build-Complete"] == "false"
    status, view = await call(
        http, "GET", f"{ecr.url}/api/builds/{build.ns}/{build.name}/{build.version}",
        token=people["owner"],
    )  # fmt: skip
    assert status == 200 and view["log_location"] == location and view["result"] is None


@pytest.mark.parametrize(
    "forged",
    [
        "s3://{other_bucket}/secret.txt",
        "s3://{log_bucket}/builds/{other_ns}/counter/1.0.0/secret.log",
        "s3://{log_bucket}/builds/{ns}/counter/1.0.0/../../../{other_ns}/counter/1.0.0/secret.log",
        "s3://{log_bucket}/builds/{ns}/counter/1.0.0//secret.log",
        "https://{other_bucket}/secret.txt",
    ],
    ids=["other-bucket", "other-app", "dot-dot", "empty-segment", "not-s3"],
)
async def test_a_forged_log_location_never_makes_the_ecr_read_another_object(
    forged, ecr, http, people, bus, s3_server
):
    build = await Build(ecr, http, people["owner"], f"lab{sfx()}").submit()
    other_ns, other_bucket = f"victim{sfx()}", f"private-{sfx()}"
    client = s3_server.client()
    client.make_bucket(other_bucket)
    if not client.bucket_exists(ecr.config.build_log_bucket):
        client.make_bucket(ecr.config.build_log_bucket)
    secret = b"the other tenant's secret\n"
    for bucket, key in (
        (other_bucket, "secret.txt"),
        (ecr.config.build_log_bucket, f"builds/{other_ns}/counter/1.0.0/secret.log"),
    ):
        client.put_object(bucket, key, io.BytesIO(secret), len(secret))
    location = forged.format(
        other_bucket=other_bucket,
        log_bucket=ecr.config.build_log_bucket,
        ns=build.ns,
        other_ns=other_ns,
    )
    await build.finish(bus, log_location=location, tail=["what the builder reported"])
    status, body, _ = await build.text()
    assert (status, body) == (200, b"what the builder reported\n")
    async with build.log(s3_server) as log:
        log("the build's own log")
    status, body, _ = await build.text()
    assert (status, body) == (200, b"the build's own log\n")


async def test_the_json_answer_stays_as_it_was(ecr, http, people, bus):
    build = await Build(ecr, http, people["owner"], f"lab{sfx()}").submit()
    await build.finish(bus, log_location=build.location, tail=["one", "two"])
    status, answer = await call(http, "GET", build.path + "/logs", token=people["owner"])
    assert status == 200
    assert answer["finished"] is True and answer["log_tail"] == ["one", "two"]
    assert answer["log_location"] == build.location and answer["build_id"] == build.build_id
    async with http.get(
        build.path + "/logs", headers={**sage_header(people["owner"]), "Accept": "text/plain"}
    ) as resp:
        assert resp.content_type == "text/plain"  # Accept: text/plain asks for the text too


async def test_a_build_whose_log_never_reached_s3_answers_the_tail_it_reported(
    ecr, http, people, bus
):
    build = await Build(ecr, http, people["owner"], f"lab{sfx()}").submit()
    await build.finish(bus, log_location=None, tail=["fetching", "error: no Dockerfile"])
    status, body, headers = await build.text()
    assert (status, body) == (200, b"fetching\nerror: no Dockerfile\n")
    assert headers["X-Build-Complete"] == "true"


async def test_a_log_shorter_than_the_offset_tells_the_follower_it_started_over(
    ecr, http, people, s3_server
):
    build = await Build(ecr, http, people["owner"], f"lab{sfx()}").submit()
    async with build.log(s3_server) as log:
        log("attempt 2")
    status, body, headers = await build.text(500)
    assert (status, body) == (200, b"")
    assert headers["X-Log-Size"] == str(len(b"attempt 2\n")) and headers["X-Log-Offset"] == "500"


async def test_private_logs_are_404_to_strangers_and_anonymous_callers(
    ecr, http, people, s3_server
):
    build = await Build(ecr, http, people["owner"], f"lab{sfx()}").submit()
    async with build.log(s3_server) as log:
        log("secret sauce")
    for token in (people["stranger"], None):
        status, body, _ = await build.text(token=token)
        assert status == 404 and b"secret sauce" not in body
        status, _ = await call(http, "GET", build.path + "/logs", token=token)
        assert status == 404
    status, _ = await call(
        http,
        "PUT",
        f"{ecr.url}/api/permissions/{build.ns}/{build.name}",
        token=people["owner"],
        json={
            "operation": "add",
            "granteeType": "GROUP",
            "grantee": "AllUsers",
            "permission": "READ",
        },
    )
    assert status == 200
    status, body, _ = await build.text(token=None)
    assert (status, body) == (200, b"secret sauce\n")


async def test_an_unreachable_log_store_is_a_503_with_retry_after(
    database_url, auth_settings, make_s3_server, make_user, http
):
    s3 = make_s3_server()
    running = await start_ecr(ecr_config(database_url, auth_settings, s3, use_bus=False))
    try:
        owner = await make_user(f"owner-{sfx()}")
        build = await Build(running, http, owner, f"lab{sfx()}").submit()
        s3.stop()
        status, body, headers = await build.text()
        assert status == 503 and headers["Retry-After"] == "5"
        assert b"build log store is unavailable" in body
        s3.start()
        status, body, headers = await build.text()
        assert (status, body, headers["X-Build-Complete"]) == (200, b"", "false")
    finally:
        await running.stop()


# ---- the command line against the real ECR and S3


async def sage(ecr, token: str, *args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    done = await run_sage(ecr.url, token, *args, cwd=cwd, within=60)
    return done.code, done.out, done.err


async def test_sage_logs_follow_prints_a_live_build_once(ecr, http, people, bus, s3_server):
    build = await Build(ecr, http, people["owner"], f"lab{sfx()}").submit()
    args = ("ecr", "app", "logs", build.app_id, "--follow", "--interval", "0.05")
    cli = asyncio.create_task(sage(ecr, people["owner"], *args))
    written = lines(120)
    async with build.log(s3_server) as log:
        for i, line in enumerate(written):
            log(line)
            if i % 10 == 0:
                await asyncio.sleep(0.05)
    await build.finish(bus, log_location=build.location, tail=written[-3:])
    code, out, err = await asyncio.wait_for(cli, 60)
    assert code == 0, err
    assert out.splitlines() == written


async def test_sage_profile_prints_the_summary_and_saves_the_chart(
    ecr, http, people, bus, tmp_path
):
    build = await Build(ecr, http, people["owner"], f"lab{sfx()}").submit()
    await build.finish(bus, log_location=None, tail=[])
    run = RunResult(
        architecture="linux/amd64", repetition=1, exit_code=0, oom_killed=False,
        timed_out=False, wall_seconds=1.5, peak_memory_bytes=40 * MiB, cpu_seconds=0.75,
        cpu_cores=0.5, passed=True,
    )  # fmt: skip
    series = ProfileSeries(
        architecture="linux/amd64", repetition=1, interval_seconds=0.1,
        t=[0.0, 0.1, 0.2, 0.3], memory_bytes=[0, 8 * MiB, 40 * MiB, 40 * MiB],
        cpu_cores=[0.0, 1.0, 0.5, 0.2],
    )  # fmt: skip
    profiled = ProfileDone(
        app_id=build.app_id,
        build_id=build.build_id,
        profile_id=str(uuid.uuid4()),
        status="passed",
        runs=[run],
        recommended={"memory_limit_bytes": 50 * MiB, "memory_request_bytes": 40 * MiB},
        concurrency={"tested": True, "copies": 2, "passed": 2, "slowdown": 1.1},
        period={"shortest_seconds": 2.0, "shortest_minutes": 1},
        node_fit={
            "rpi": {"architecture": "linux/arm64", "copies": 0, "limited_by": "architecture"}
        },
        series=[series],
    )
    await bus.publish(make_event("test-builder", profiled, subject=build.app_id))

    async def profiled_now() -> bool:
        status, _ = await call(http, "GET", build.path + "/profile", token=people["owner"])
        return status == 200

    await eventually(profiled_now)
    code, out, err = await sage(
        ecr, people["owner"], "ecr", "app", "profile", build.app_id, cwd=tmp_path
    )
    assert code == 0, err
    assert out.startswith(f"{build.app_id}: profile passed (build 1)")
    assert "recommended limits: memory 50.0 MiB (request 40.0 MiB)" in out
    assert "concurrency: 2 copies side by side, 2 passed" in out
    chart = tmp_path / "counter-1.0.0-profile.svg"
    root = ElementTree.fromstring(chart.read_text())
    points = [p.get("points").split() for p in root.iter("{http://www.w3.org/2000/svg}polyline")]
    assert [len(p) for p in points] == [4, 4]
    again = await sage(ecr, people["owner"], "ecr", "app", "profile", build.app_id, cwd=tmp_path)
    assert again[0] == 1 and "pass --force" in again[2]
