"""`bus_context` in an aiohttp app: the bus, the relay and the consumers start and stop with it,
and `/readyz` follows the broker connection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from sage_common import db
from sage_common.bus import Bus, Consumer, enqueue
from sage_common.config import ServiceConfig
from sage_common.events import CloudEvent, EventData, make_event
from sage_common.web import BUS, CONFIG, POOL, READY_CHECKS, SERVICE, bus_context, readyz
from tests.support.bus import TcpProxy, delete_topology, eventually


class Noted(EventData):
    routing_key = "test.noted"
    text: str


class Notes(Consumer):
    async def handle(self, conn: asyncpg.Connection, event: CloudEvent) -> None:
        await conn.execute("INSERT INTO notes (text) VALUES ($1)", event.data["text"])


@pytest.fixture
async def pool(database_url: str, unique: str) -> AsyncIterator[asyncpg.Pool]:
    schema = f"bus_web_{unique}"
    pool = await db.create_pool(database_url, schema, max_size=6)
    await db.migrate(pool, schema)
    await pool.execute("CREATE TABLE notes (text text NOT NULL)")
    yield pool
    await pool.close()


async def test_bus_context_runs_relay_and_consumers_and_readiness_follows_the_broker(
    pool: asyncpg.Pool, amqp_url: str, unique: str
) -> None:
    exchange, queue = f"test.web.{unique}", f"test.web.notes.{unique}"
    made: list[Consumer] = []

    def consumers(app: web.Application) -> list[Consumer]:
        made.append(
            Notes(app[POOL], app[BUS], name=queue, routing_keys=["test.noted"], retry_delays=(1,))
        )
        return made

    proxy = TcpProxy()
    await proxy.open()
    app = web.Application()
    app[CONFIG] = ServiceConfig(
        amqp_url=SecretStr(proxy.url(amqp_url)), exchange=exchange, outbox_poll_seconds=0.05
    )
    app[SERVICE] = "test-web"
    app[READY_CHECKS] = []
    app[POOL] = pool
    app.cleanup_ctx.append(bus_context(consumers))
    app.router.add_get("/readyz", readyz)

    async with AsyncExitStack() as later:
        later.push_async_callback(delete_topology, amqp_url, exchanges=[exchange])
        later.push_async_callback(proxy.close)
        # Registered before the app starts, so it runs after the app (and its consumer) stopped.
        later.push_async_callback(lambda: delete_topology(amqp_url, queues=made[0].queue_names))
        client: TestClient[Any, Any] = await later.enter_async_context(TestClient(TestServer(app)))
        assert (await client.get("/readyz")).status == 200

        async with pool.acquire() as conn, conn.transaction():
            await enqueue(conn, make_event("test", Noted(text="hello")))
        await eventually(lambda: pool.fetchval("SELECT count(*) = 1 FROM notes"))

        await proxy.close()
        await eventually(lambda: not app[BUS].connected)
        answer = await client.get("/readyz")
        assert answer.status == 503
        assert "_bus_ready" in (await answer.json())["failed"]

        await proxy.open()
        await eventually(lambda: app[BUS].connected)
        assert (await client.get("/readyz")).status == 200
        bus: Bus = app[BUS]

    assert not bus.connected  # stopped with the app
    assert made[0]._channel is None
