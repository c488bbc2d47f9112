"""Each service's broker user publishes only its own events, on the real RabbitMQ.

The users are the test's own (unique names, made with rabbitmqctl from the permissions in
`sage_common.bus.grants`, deleted afterwards) on an exchange of the test's own; the shipped
script `deploy/rabbitmq/users.sh` is checked to be what the same module writes.
"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import asyncpg
import pytest
from aiormq.exceptions import ChannelAccessRefused
from yarl import URL

from sage_common import db
from sage_common.bus import Bus, Consumer, PublishRefused, queue_names
from sage_common.bus.grants import PUBLISHES, password_variable, script, user_name
from sage_common.eventdoc import EMITTERS, event_models
from sage_common.events import CloudEvent, make_event
from sage_common.schemas import AppSubmitted, BuildDone, BuildStarted
from sage_ecr.config import Config as EcrConfig
from tests.fixtures.auth import call
from tests.fixtures.broker import broker_user
from tests.support.bus import delete_topology, eventually
from tests.support.ecr import EventTap, app_spec, start_ecr

ROOT = Path(__file__).resolve().parents[2]
# The script (dev stack, compose) and its copy for the dev Kubernetes overlay.
SCRIPTS = [
    ROOT / "deploy" / "rabbitmq" / "users.sh",
    ROOT / "deploy" / "k8s" / "overlays" / "dev" / "rabbitmq-users.sh",
]


class Broker:
    """Makes broker users for services on the test's exchange and queue prefix; removes them."""

    def __init__(self, amqp_url: str, stack: AsyncExitStack, tag: str) -> None:
        self.amqp_url, self.stack, self.tag = amqp_url, stack, tag
        self.exchange = f"test.grants.{tag}"

    def prefix(self, service: str) -> str:
        return f"test.grants.{self.tag}.{service}"

    async def user(self, service: str) -> str:
        """The AMQP URL of a new user with `service`'s permissions."""
        return await broker_user(
            self.amqp_url,
            service,
            exchange=self.exchange,
            prefix=self.prefix(service),
            cleanup=self.stack,
        )

    async def bus(self, url: str, service: str) -> Bus:
        bus = Bus(url, exchange=self.exchange, service=service)
        await bus.connect()
        self.stack.push_async_callback(bus.close)
        return bus


@pytest.fixture
async def broker(amqp_url: str) -> AsyncIterator[Broker]:
    async with AsyncExitStack() as stack:
        broker = Broker(amqp_url, stack, uuid.uuid4().hex[:8])
        stack.push_async_callback(delete_topology, amqp_url, exchanges=[broker.exchange])
        yield broker


def submitted() -> CloudEvent:
    source = {"url": "https://git.example.org/a/b.git", "branch": "main"}
    data = AppSubmitted(app_id="a/b:1.0", build_id="1", source=source, submitter="mallory")
    return make_event("builder", data, subject="a/b:1.0")


def build_done() -> CloudEvent:
    data = BuildDone(app_id="a/b:1.0", build_id="1", status="success")
    return make_event("builder", data, subject="a/b:1.0")


async def test_the_builders_user_cannot_publish_app_submitted_but_its_own_events(
    broker: Broker,
) -> None:
    builder = await broker.bus(await broker.user("builder"), "builder")
    with pytest.raises(PublishRefused, match="app.submitted"):
        await builder.publish(submitted(), timeout=5)
    await builder.publish(build_done(), timeout=5)  # the same connection goes on
    started = BuildStarted(app_id="a/b:1.0", build_id="1", started_at="2030-01-01T00:00:00Z")
    await builder.publish(make_event("builder", started, subject="a/b:1.0"), timeout=5)


async def test_the_broker_closes_the_channel_with_access_refused(broker: Broker) -> None:
    url = await broker.user("profiler")
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(
            broker.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        message = aio_pika.Message(submitted().model_dump_json().encode())
        with pytest.raises(ChannelAccessRefused, match="ACCESS_REFUSED"):
            await exchange.publish(message, "app.submitted")
        assert channel.is_closed


async def test_the_ecrs_user_publishes_app_submitted_and_not_build_done(broker: Broker) -> None:
    ecr = await broker.bus(await broker.user("ecr-api"), "ecr-api")
    async with EventTap(broker.amqp_url, broker.exchange, ["app.submitted"]) as tap:
        await ecr.publish(submitted(), timeout=5)
        event = await tap.get(lambda e: e.routing_key == "app.submitted", within=10)
    assert event.data["submitter"] == "mallory"
    with pytest.raises(PublishRefused, match="build.done"):
        await ecr.publish(build_done(), timeout=5)


async def test_a_user_cannot_put_messages_into_other_services_queues(broker: Broker) -> None:
    """Not through the default exchange, nor by declaring or binding what is not its own."""
    victim_queue = f"{broker.prefix('ecr-api')}.pipeline"
    url = await broker.user("builder")
    attempts: list[Callable[[aio_pika.abc.AbstractChannel], Awaitable[Any]]] = [
        lambda ch: ch.default_exchange.publish(
            aio_pika.Message(build_done().model_dump_json().encode()), victim_queue
        ),
        lambda ch: ch.declare_queue(victim_queue, durable=True),
        lambda ch: ch.declare_exchange(f"{broker.prefix('ecr-api')}.requeue", durable=True),
    ]
    for attempt in attempts:
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            with pytest.raises(ChannelAccessRefused):
                await attempt(channel)


class FailsOnce(Consumer):
    """Fails each event the first time (a retry), and poison events every time (the DLQ)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.attempts: dict[str, int] = {}
        self.done: list[str] = []

    async def handle(self, conn: asyncpg.Connection, event: CloudEvent) -> None:
        self.attempts[event.id] = self.attempts.get(event.id, 0) + 1
        if event.data["status"] == "failure" or self.attempts[event.id] == 1:
            raise ValueError("not this time")
        self.done.append(event.id)


async def test_a_consumer_retries_and_dead_letters_with_only_its_own_rights(
    broker: Broker, amqp_url: str, database_url: str
) -> None:
    name = f"{broker.prefix('profiler')}.build-done"
    pool = await db.create_pool(database_url, f"grants_{broker.tag}", max_size=4)
    broker.stack.push_async_callback(pool.close)
    await db.migrate(pool, f"grants_{broker.tag}")
    profiler = await broker.bus(await broker.user("profiler"), "profiler")
    consumer = FailsOnce(
        pool, profiler, name=name, routing_keys=["build.done"], retry_delays=(0.2,)
    )
    broker.stack.push_async_callback(delete_topology, amqp_url, queues=queue_names(name, (0.2,)))
    await consumer.start()
    broker.stack.push_async_callback(consumer.stop, 0)
    builder = await broker.bus(await broker.user("builder"), "builder")
    good = build_done()
    poison = make_event(
        "builder", BuildDone(app_id="a/b:1.0", build_id="2", status="failure"), subject="a/b:1.0"
    )
    await builder.publish(good)
    await builder.publish(poison)
    await eventually(lambda: consumer.done == [good.id])
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        dlq = await channel.declare_queue(consumer.dlq_name, durable=True, passive=True)

        async def dead_lettered() -> bool:
            return (await dlq.declare()).message_count == 1

        await eventually(dead_lettered, within=15)


async def test_the_ecr_runs_and_publishes_with_its_own_user(
    broker: Broker, database_url: str, auth_settings, make_user
) -> None:
    config = EcrConfig(
        database_url=database_url,
        db_schema=f"ecr_grants_{broker.tag}",
        amqp_url=await broker.user("ecr-api"),
        exchange=broker.exchange,
        consumer_queue=f"{broker.prefix('ecr-api')}.pipeline",
        outbox_poll_seconds=0.2,
        **auth_settings("ecr-api"),
    )
    ecr = await start_ecr(config)
    broker.stack.push_async_callback(
        delete_topology, broker.amqp_url, queues=queue_names(config.consumer_queue)
    )
    broker.stack.push_async_callback(ecr.stop)
    token = await make_user(f"grants-{broker.tag}")
    ns = f"grants{broker.tag}"
    async with (
        EventTap(broker.amqp_url, broker.exchange, ["app.submitted"]) as tap,
        aiohttp.ClientSession() as http,
    ):
        status, body = await call(
            http, "POST", f"{ecr.url}/api/submit", token=token, json=app_spec(ns, "app")
        )
        assert status == 200, body
        event = await tap.get(lambda e: e.subject == f"{ns}/app:1.0.0", within=15)
    assert event.routing_key == "app.submitted"


def test_every_event_has_exactly_one_publisher_in_the_grants() -> None:
    # The event docs name each event's emitter from the grants, so an event published by no
    # service, or by two, would be documented wrongly and refused (or allowed) at the broker.
    granted = sorted(key for keys in PUBLISHES.values() for key in keys)
    assert granted == sorted(model.routing_key for model in event_models())
    assert set(EMITTERS) == set(granted)


@pytest.mark.parametrize("path", SCRIPTS, ids=[str(p.relative_to(ROOT)) for p in SCRIPTS])
def test_the_shipped_user_scripts_are_generated_from_the_grants(path: Path) -> None:
    assert path.read_text() == script(), (
        f"{path.relative_to(ROOT)} is stale: run"
        f" .venv/bin/python -m sage_common.bus.grants > {path.relative_to(ROOT)}"
    )


def test_the_dev_stack_gives_each_bus_service_its_own_user() -> None:
    spec = importlib.util.spec_from_file_location("stack_env", ROOT / "scripts" / "stack_env.py")
    assert spec is not None and spec.loader is not None
    stack_env = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stack_env)
    values = stack_env.build({})
    assert set(stack_env.BUS_USERS) == set(PUBLISHES)
    for service, prefix in stack_env.BUS_USERS.items():
        url = URL(values[prefix + "AMQP_URL"])
        assert url.user == user_name(service)
        assert url.password == values[password_variable(service)]
