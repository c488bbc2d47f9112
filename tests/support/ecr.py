"""Helpers for tests that run the real ECR API: start it on loopback, and watch the events it emits.

`start_ecr` runs the real application (its own schema, exchange and queue names come from the
config, so parallel runs do not meet). `EventTap` binds a throw-away queue to the events exchange
and hands over what arrives, for tests that check what the service published; `builder_bus`
publishes as the builder and the profiler do, and `handled` waits until the ECR took it in.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping

import aio_pika

from sage_common.bus import Bus, queue_names
from sage_common.events import CloudEvent
from sage_common.web import POOL
from sage_ecr.app import create_app
from sage_ecr.config import Config
from tests.support.bus import delete_topology, eventually
from tests.support.serve import Running, serve

RunningEcr = Running[Config]


def busless_config(
    database_url: str, auth: Mapping[str, object], prefix: str = "ecr_api", **settings: object
) -> Config:
    """An ECR config on a schema of its own and with no bus: for tests of its HTTP API alone.
    `auth` is what the `auth_settings("ecr-api")` fixture gives."""
    return Config(
        database_url=database_url,
        db_schema=f"{prefix}_{uuid.uuid4().hex[:8]}",
        use_bus=False,
        **auth,  # type: ignore[arg-type]
        **settings,  # type: ignore[arg-type]
    )


@contextlib.asynccontextmanager
async def running_ecr(config: Config) -> AsyncIterator[RunningEcr]:
    """`start_ecr`, stopped when the block ends."""
    running = await start_ecr(config)
    try:
        yield running
    finally:
        await running.stop()


def bus_config(
    database_url: str, amqp_url: str, auth: Mapping[str, object], prefix: str, **settings: object
) -> Config:
    """An ECR config on the real broker, with a schema, an exchange and a queue of its own: for
    tests that play the builder and the profiler. `auth` as for `busless_config`."""
    s = uuid.uuid4().hex[:8]
    return Config(
        database_url=database_url,
        db_schema=f"{prefix}_{s}",
        amqp_url=amqp_url,  # type: ignore[arg-type]
        exchange=f"test.ecr.{s}",
        consumer_queue=f"test.ecr.{s}.pipeline",
        outbox_poll_seconds=0.2,
        **auth,  # type: ignore[arg-type]
        **settings,  # type: ignore[arg-type]
    )


@contextlib.asynccontextmanager
async def running_ecr_on_bus(config: Config) -> AsyncIterator[RunningEcr]:
    """`running_ecr`; its exchange and queues are deleted from the broker when the block ends."""
    async with running_ecr(config) as running:
        yield running
    await delete_topology(
        config.amqp_url.get_secret_value(),
        exchanges=[config.exchange],
        queues=queue_names(config.consumer_queue),
    )


@contextlib.asynccontextmanager
async def builder_bus(ecr: RunningEcr, amqp_url: str) -> AsyncIterator[Bus]:
    """Publishes as the builder and the profiler would, on the ECR's exchange."""
    bus = Bus(amqp_url, exchange=ecr.config.exchange, service="test-builder")
    await bus.connect()
    try:
        yield bus
    finally:
        await bus.close()


async def handled(ecr: RunningEcr, *events: CloudEvent) -> None:
    """Wait until the ECR's consumer has recorded every one of `events` (duplicates included)."""
    ids = [uuid.UUID(e.id) for e in events]

    async def recorded() -> bool:
        async with ecr.app[POOL].acquire() as conn:
            found = await conn.fetchval(
                "SELECT count(*) FROM processed_events WHERE consumer = $1 AND event_id = ANY($2)",
                ecr.config.consumer_queue,
                ids,
            )
        return int(found) == len(set(ids))

    await eventually(recorded)


async def start_ecr(config: Config) -> RunningEcr:
    """Start the real app on a free loopback port."""
    return await serve(create_app(config), config)


class EventTap:
    """A queue bound to `exchange` for `routing_keys`; `get` waits for a match."""

    EXPIRES_MS = 10 * 60 * 1000

    def __init__(
        self, amqp_url: str, exchange: str, routing_keys: Iterable[str], *, durable: bool = False
    ) -> None:
        self.amqp_url = amqp_url
        self.durable = durable  # kept through a broker restart, bindings and all
        self.exchange_name = exchange
        self.routing_keys = list(routing_keys)
        self.seen: list[CloudEvent] = []
        self._arrived = asyncio.Condition()
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._queue: aio_pika.abc.AbstractQueue | None = None

    async def __aenter__(self) -> EventTap:
        # A named queue that outlives its connection (for `EXPIRES_MS` unused), on a robust
        # connection: a loop starved past the heartbeat on a loaded machine drops the connection,
        # and an exclusive queue would go with it and every event published until it is back.
        self._connection = await aio_pika.connect_robust(self.amqp_url)
        channel = await self._connection.channel()
        exchange = await channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        self._queue = await channel.declare_queue(
            f"test-tap.{uuid.uuid4().hex}",
            durable=self.durable,
            arguments={"x-expires": self.EXPIRES_MS},
        )
        for key in self.routing_keys:
            await self._queue.bind(exchange, key)
        await self._queue.consume(self._on_message, no_ack=True)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._connection is not None:
            if self._queue is not None:
                with contextlib.suppress(Exception):
                    await self._queue.delete(if_unused=False, if_empty=False)
            with contextlib.suppress(Exception):
                await self._connection.close()

    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with self._arrived:
            self.seen.append(CloudEvent.model_validate_json(message.body))
            self._arrived.notify_all()

    async def get(self, match: Callable[[CloudEvent], bool], *, within: float = 10.0) -> CloudEvent:
        """The first event (seen before or arriving later) for which `match` is true."""
        async with asyncio.timeout(within), self._arrived:
            while True:
                for event in self.seen:
                    if match(event):
                        return event
                await self._arrived.wait()

    def count(self, match: Callable[[CloudEvent], bool]) -> int:
        return sum(1 for event in self.seen if match(event))


def app_spec(namespace: str, name: str, version: str = "1.0.0", **overrides: object) -> dict:
    """A valid app description to submit, with `overrides` replacing top-level fields."""
    spec: dict = {
        "namespace": namespace,
        "name": name,
        "version": version,
        "description": f"{name}: counts things in camera images",
        "keywords": ["camera", "counting"],
        "source": {
            "url": f"https://git.example.org/{namespace}/{name}.git",
            "branch": "main",
            "architectures": ["linux/amd64", "linux/arm64"],
        },
        "hardware": {"gpu": "optional", "min_memory": "256Mi", "devices": ["camera"]},
        "testing": {"command": ["/bin/app", "--selftest"], "timeout": "1m", "period": "5m"},
    }
    spec.update(overrides)
    return spec
