"""Hostile apps (tests/hostile/profiles) profiled for real: each contained, the profiler unharmed.

Every app is built on the real Docker engine and profiled by the profiler service, in this
process, on the real broker and database, with the shipped isolation settings (no network,
read-only root, no capabilities, no-new-privileges, pids, memory and CPU ceilings, the
unprivileged user); only the timeout and sizes are small so the corpus runs in well under a
minute per app. After each: the profile says what happened, no container or cgroup is left, the
profiler answers /readyz with 200, and an ordinary app profiled next passes.
"""

from __future__ import annotations

import asyncio
import io
import socket
import tarfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import docker
import pytest
from aiohttp import web

from sage_common.bus import queue_names
from sage_common.events import CloudEvent, make_event
from sage_common.schemas import BuildDone, ProfileDone
from sage_common.work import RETRY_DELAYS
from sage_profiler.app import create_app
from sage_profiler.cgroup import detect
from sage_profiler.config import Config
from sage_profiler.runner_docker import LABEL
from tests.support.ports import free_port

MiB = 1 << 20
CORPUS = Path(__file__).resolve().parents[1] / "hostile" / "profiles"
BUSYBOX = Path("/bin/busybox")
TIMEOUT = 4.0
TMPFS = 16 * MiB
PIDS = 64
BAD = ("FOUND", "REACHED", "WROTE")


@dataclass(frozen=True)
class Expect:
    """How one hostile app's profile must end."""

    status: str
    reason: str | None = None  # in the profile's reason
    log: tuple[str, ...] = ()  # in its run's log tail
    timed_out: bool = False


EXPECT = {
    "forkbomb": Expect("failed", f"timed out after {TIMEOUT:g} s", timed_out=True),
    "diskfill": Expect(
        "failed",
        "exited 3, expected 0",
        ("limit in /tmp after 16 MiB", "No space left on device", "limit in /dev/shm"),
    ),
    "symlink": Expect("passed", log=("root holds: app.sh bin dev escape etc proc sys tmp",)),
    "procfs": Expect("passed", log=("interfaces: lo", "cgroup:")),
    "forever": Expect("failed", f"timed out after {TIMEOUT:g} s", ("waiting forever",), True),
    "network": Expect(
        "passed", log=("unreachable: 5432", "unreachable: 5672", "unreachable: 9000")
    ),
    "rootfs": Expect(
        "passed", log=("read-only: /evil", "read-only: /app.sh", "read-only: /etc/hosts")
    ),
    "root": Expect("passed", log=("uid=65534 gid=65534",)),
}


@pytest.fixture(scope="module")
def images() -> Iterator[dict[str, str]]:
    """Each app of the corpus built (FROM scratch + static busybox); removed afterwards."""
    client = docker.from_env()
    tag = uuid.uuid4().hex[:8]
    built = {}
    try:
        for app in sorted(p for p in CORPUS.iterdir() if p.is_dir()):
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:
                for name in ("Dockerfile", "app.sh"):
                    tar.add(app / name, arcname=name)
                tar.add(BUSYBOX, arcname="busybox")
            buf.seek(0)
            name = f"sage-profiler-hostile/{app.name}:{tag}"
            client.images.build(
                fileobj=buf, custom_context=True, tag=name, rm=True, network_mode="none"
            )
            built[app.name] = name
        yield built
    finally:
        for name in built.values():
            client.images.remove(name, force=True)
        client.close()


@pytest.fixture(scope="module")
def ordinary(images: dict[str, str]) -> str:
    """A well-behaved app: the `root` image with nothing hostile left once it runs unprivileged."""
    return images["root"]


class Profiles:
    """Publishes build.done and collects profile.done on the test's own exchange."""

    def __init__(self, exchange: Any) -> None:
        self.exchange = exchange
        self.done: dict[str, ProfileDone] = {}
        self.arrived = asyncio.Condition()

    async def on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process():
            done = CloudEvent.model_validate_json(message.body).parse_data(ProfileDone)
            async with self.arrived:
                self.done[done.build_id] = done
                self.arrived.notify_all()

    async def profile(self, image: str, testing: dict[str, Any] | None = None) -> ProfileDone:
        build_id = uuid.uuid4().hex
        data = BuildDone(
            app_id="hostile/app:1.0", build_id=build_id, status="success", image=image,
            testing=testing,
        )  # fmt: skip
        event = make_event("test/builder", data, subject=data.app_id)
        await self.exchange.publish(
            aio_pika.Message(event.model_dump_json().encode(), message_id=event.id),
            routing_key=event.routing_key,
        )
        async with asyncio.timeout(90), self.arrived:
            await self.arrived.wait_for(lambda: build_id in self.done)
        return self.done[build_id]


@pytest.fixture
def settings(database_url: str, amqp_url: str, unique: str, tmp_path: Path) -> dict[str, Any]:
    """The shipped isolation with small timeouts and sizes, private to this test."""
    return {
        "database_url": database_url,
        "db_schema": f"profiler_{unique}",
        "amqp_url": amqp_url,
        "exchange": f"sage.test.hostile.{unique}",
        "queue": f"profiler.test.{unique}",
        "cancel_queue": f"profiler.test.{unique}.cancel",
        "port": free_port(),
        "pull_policy": "never",
        "cgroup_prefix": f"sage-profiler-hostile-{unique}",
        "memory_limit_bytes": 256 * MiB,
        "cpu_limit": 0.5,
        "pids_limit": PIDS,
        "tmpfs_bytes": TMPFS,
        "default_timeout_seconds": TIMEOUT,
        "default_repetitions": 1,
        "work_dir": str(tmp_path),
        "outbox_poll_seconds": 0.2,
        "gpu": "off",
    }


@pytest.fixture
async def profiles(settings: dict[str, Any]) -> AsyncIterator[Profiles]:
    """A running profiler (with its HTTP port open) and the test's view of its events."""
    conn = await aio_pika.connect_robust(settings["amqp_url"])
    channel = await conn.channel()
    exchange = await channel.declare_exchange(
        settings["exchange"], aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, "profile.done")
    seen = Profiles(exchange)
    await queue.consume(seen.on_message)
    runner = web.AppRunner(create_app(Config(**settings)))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", settings["port"])
    await site.start()
    try:
        yield seen
    finally:
        await runner.cleanup()
        detect().remove(settings["cgroup_prefix"])
        for name in (
            *queue_names(settings["queue"], RETRY_DELAYS),
            *queue_names(settings["cancel_queue"]),
        ):
            await channel.queue_delete(name)
        await channel.exchange_delete(settings["exchange"])
        await conn.close()


async def ready(settings: dict[str, Any]) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{settings['port']}/readyz") as resp,
    ):
        return resp.status


def left_behind(settings: dict[str, Any]) -> list[str]:
    """Containers of any hostile app, cgroups under this profiler's prefix, files in its work dir."""
    client = docker.from_env()
    try:
        found = [
            c.name
            for c in client.containers.list(all=True, filters={"label": LABEL})
            if c.labels.get("org.sagecontinuum.app") == "hostile/app:1.0"
        ]
    finally:
        client.close()
    cgroups = detect()
    prefix = settings["cgroup_prefix"]
    top = cgroups.root / ("memory" if cgroups.version == 1 else "") / prefix
    found += [str(p) for p in top.iterdir() if p.is_dir()] if top.is_dir() else []
    found += [str(p) for p in Path(settings["work_dir"]).iterdir()]
    return found


@pytest.mark.parametrize("app", sorted(EXPECT))
async def test_a_hostile_app_is_contained_and_the_profiler_stays_healthy(
    app: str, images: dict[str, str], ordinary: str, profiles: Profiles, settings: dict[str, Any]
) -> None:
    expect = EXPECT[app]
    done = await profiles.profile(images[app])
    (run,) = done.runs
    log = "\n".join(run.log_tail)
    assert done.status == expect.status, (done.reason, log)
    if expect.reason:
        assert expect.reason in (done.reason or ""), done.reason
    for line in expect.log:
        assert line in log, log
    assert not [w for w in BAD if w in log], log
    assert run.timed_out is expect.timed_out
    # Measured from its cgroup even when killed: the figures are real, not zeros.
    assert run.measured_by == "cgroup" and run.peak_memory_bytes > 0 and run.cpu_seconds > 0
    assert await asyncio.to_thread(left_behind, settings) == []
    assert await ready(settings) == 200
    after = await profiles.profile(ordinary, {"timeout": 60})  # the machine may be busy
    assert after.status == "passed" and after.runs[0].exit_code == 0, after.reason


async def test_a_fork_bomb_is_held_at_the_pids_limit(
    images: dict[str, str], profiles: Profiles
) -> None:
    done = await profiles.profile(images["forkbomb"])
    assert "can't fork" in "\n".join(done.runs[0].log_tail)  # the pids cgroup said no


async def test_the_ports_a_test_cannot_reach_are_open_on_the_host(
    images: dict[str, str], profiles: Profiles
) -> None:
    """The network app's "unreachable" means something: the same ports answer outside."""
    done = await profiles.profile(images["network"])
    assert done.status == "passed"
    for port in (5432, 5672, 9000):
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass


async def test_an_app_that_asks_to_run_as_root_fails_without_the_operators_leave(
    images: dict[str, str], profiles: Profiles, settings: dict[str, Any]
) -> None:
    done = await profiles.profile(images["root"], {"user": "root"})
    assert done.status == "failed" and done.runs == []
    assert "testing.user asks to run as root" in (done.reason or "")
    assert await asyncio.to_thread(left_behind, settings) == []
    numeric = await profiles.profile(images["root"], {"user": "1000:1000"})
    assert numeric.status == "passed" and "uid=1000 gid=1000" in numeric.runs[0].log_tail


async def test_the_canary_in_a_neighbour_container_and_on_the_host_stays_unseen(
    images: dict[str, str], profiles: Profiles, tmp_path: Path
) -> None:
    """Another container holding a secret in its environment, a secret file on the host: the
    /proc and symlink apps look for both and find neither."""
    secret = f"SAGE-CANARY-{uuid.uuid4().hex}"
    canary = tmp_path.parent / f"canary-{uuid.uuid4().hex[:8]}"
    canary.write_text(secret)
    client = docker.from_env()
    neighbour = client.containers.run(
        images["forever"], environment={"SECRET": secret}, network_mode="none",
        detach=True, user="65534:65534", read_only=True,
    )  # fmt: skip
    try:
        procfs = await profiles.profile(images["procfs"])
        link = await profiles.profile(images["symlink"], {"env": {"CANARY": str(canary)}})
    finally:
        neighbour.remove(force=True)
        client.close()
        canary.unlink()
    for done in (procfs, link):
        log = "\n".join(done.runs[0].log_tail)
        assert done.status == "passed", log
        assert secret not in log and "FOUND" not in log, log
