"""Drive a running builder through the bus: publish app.submitted / build.cancel, await results."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aio_pika
from aiohttp import web
from pydantic import SecretStr

from sage_builder.app import create_app
from sage_builder.config import Config
from sage_common.bus import Bus, queue_names
from sage_common.events import CloudEvent, make_event
from sage_common.schemas import AppSource, AppSubmitted, BuildCancelled, BuildDone
from sage_common.work import RETRY_DELAYS


class Events:
    """Events seen on a private queue bound to `build.*`, awaited by build id."""

    def __init__(self) -> None:
        self.seen: list[CloudEvent] = []
        self._changed = asyncio.Condition()

    async def on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process():
            event = CloudEvent.model_validate_json(message.body)
        async with self._changed:
            self.seen.append(event)
            self._changed.notify_all()

    def of(self, build_id: str, key: str) -> list[CloudEvent]:
        return [e for e in self.seen if e.routing_key == key and e.data.get("build_id") == build_id]

    async def wait(self, build_id: str, key: str, within: float = 180.0) -> CloudEvent:
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: bool(self.of(build_id, key))), within
            )
        return self.of(build_id, key)[0]

    async def done(self, build_id: str, within: float = 180.0) -> BuildDone:
        return (await self.wait(build_id, "build.done", within)).parse_data(BuildDone)


class Harness:
    """Publishes on one exchange and records what the builder answers there."""

    def __init__(self, bus: Bus, events: Events, url_of: Callable[[str], str]) -> None:
        self.bus, self.events, self.url_of = bus, events, url_of

    async def submit(
        self, app_id: str, repo: str, *, submitter: str = "tester", **source: Any
    ) -> str:
        """Publish app.submitted for `repo` (or `url=` given); return the new build id."""
        build_id = str(uuid.uuid4())
        source.setdefault("url", self.url_of(repo))
        data = AppSubmitted(
            app_id=app_id, build_id=build_id, source=AppSource(**source), submitter=submitter
        )
        await self.bus.publish(make_event("tests", data, subject=app_id))
        return build_id

    async def cancel(self, app_id: str, build_id: str) -> None:
        data = BuildCancelled(app_id=app_id, build_id=build_id, requested_by="tester")
        await self.bus.publish(make_event("tests", data, subject=app_id))

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, amqp_url: str, exchange: str, url_of: Callable[[str], str]
    ) -> AsyncIterator[Harness]:
        """A harness on `exchange`; the exchange and its test queue are deleted afterwards."""
        bus = Bus(amqp_url, exchange=exchange, service="tests")
        await bus.connect()
        events = Events()
        connection = await aio_pika.connect_robust(amqp_url)
        try:
            channel = await connection.channel()
            queue = await channel.declare_queue(f"{exchange}.observer", auto_delete=True)
            ex = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
            await queue.bind(ex, "build.*")
            await queue.consume(events.on_message)
            yield cls(bus, events, url_of)
        finally:
            await bus.close()
            with contextlib.suppress(Exception):
                channel = await connection.channel()
                await channel.exchange_delete(exchange)
            await connection.close()


@contextlib.asynccontextmanager
async def running_builder(config: Config) -> AsyncIterator[web.Application]:
    """The builder's real app on `config.host:config.port` until the block ends."""
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, config.host, config.port).start()
        yield app
    finally:
        await runner.cleanup()


def config_for_tests(**settings: Any) -> Config:
    """A builder's settings for tests: loopback git allowed, short back-offs, polls and flushes."""
    base: dict[str, Any] = {
        "concurrency": 2,
        "build_timeout_seconds": 300,
        "cancel_poll_seconds": 0.5,
        "git_insecure_hosts": ["127.0.0.1"],
        "git_timeout_seconds": 30,
        "push_attempts": 3,
        "push_backoff_seconds": 1.0,
        "log_flush_seconds": 0.2,
    }
    return Config(**{**base, **settings})


def config_env(config: Config) -> dict[str, str]:
    """`config` as the `SAGE_BUILDER_*` environment of a builder process."""
    env = {}
    for name, value in config.model_dump().items():
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, list | dict):
            text = json.dumps(value)
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        env[f"SAGE_BUILDER_{name.upper()}"] = text
    return env


async def delete_queues(amqp_url: str, config: Config) -> None:
    """Remove the durable queues a test builder declared on the shared broker."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        for queue in (
            *queue_names(config.queue, RETRY_DELAYS),
            *queue_names(config.cancel_queue),
            *queue_names(config.app_deleted_queue, config.deletion_retry_seconds),
        ):
            await channel.queue_delete(queue)


async def until(check: Callable[[], bool], within: float = 60.0) -> None:
    """Poll `check()` (sync, run in a thread) until it is true; AssertionError after `within` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await asyncio.to_thread(check):
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.1)


def read_log(client: Any, location: str) -> str:
    """The build log at `s3://bucket/key`, through a minio client."""
    if not location.startswith("s3://"):
        raise ValueError(f"not an s3 location: {location}")
    bucket, key = location[5:].split("/", 1)
    response = client.get_object(bucket, key)
    try:
        return str(response.read().decode())
    finally:
        response.close()
        response.release_conn()
