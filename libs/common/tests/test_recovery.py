"""A service outlives a Postgres restart and a broker loss by itself, and its probes tell the
truth: `/readyz` 503 with the reason during the outage, 200 after; `/healthz` fails only for a
background loop dead beyond restarting.

Postgres here is a private cluster that the test stops and starts (the shared server is never
touched); the broker is reached through a proxy that the test cuts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from sage_common.auth import Principal
from sage_common.bus import Consumer, enqueue
from sage_common.config import ServiceConfig
from sage_common.events import CloudEvent, EventData, make_event
from sage_common.supervise import Supervised
from sage_common.web import BUS, POOL, bus_context, create_service_app, supervise
from tests.fixtures.postgres import PrivatePostgres
from tests.support.bus import TcpProxy, delete_topology, eventually


class Noted(EventData):
    routing_key = "test.noted"
    n: int


class Notes(Consumer):
    async def handle(self, conn: asyncpg.Connection, event: CloudEvent) -> None:
        await conn.execute(
            "INSERT INTO notes (n, event_id) VALUES ($1, $2)", event.data["n"], event.id
        )


class NobodyIntrospector:
    async def introspect(self, token: str) -> Principal | None:
        return None


def make_app(config: ServiceConfig, queue: str, made: list[Consumer]) -> web.Application:
    def consumers(app: web.Application) -> list[Consumer]:
        made.append(
            Notes(app[POOL], app[BUS], name=queue, routing_keys=["test.noted"], retry_delays=(1,))
        )
        return made

    async def notes_table(app: web.Application) -> Any:
        await app[POOL].execute(
            "CREATE TABLE IF NOT EXISTS notes (n int NOT NULL, event_id text NOT NULL)"
        )
        yield

    app = create_service_app("recovery", config, introspector=NobodyIntrospector())
    app.cleanup_ctx.append(notes_table)
    app.cleanup_ctx.append(bus_context(consumers))
    return app


async def probe(client: TestClient[Any, Any], path: str) -> tuple[int, dict[str, Any]]:
    answer = await client.get(path)
    return answer.status, await answer.json()


async def enqueue_noted(pool: asyncpg.Pool, numbers: range) -> list[str]:
    ids = []
    async with pool.acquire() as conn, conn.transaction():
        for n in numbers:
            event = make_event("test", Noted(n=n), subject=f"note/{n}")
            await enqueue(conn, event)
            ids.append(event.id)
    return ids


async def test_service_resumes_by_itself_after_postgres_restart_with_truthful_readiness(
    make_postgres: Callable[[], PrivatePostgres], amqp_url: str, unique: str
) -> None:
    pg = make_postgres()
    broker = TcpProxy()
    await broker.open()
    exchange, queue = f"test.recovery.{unique}", f"test.recovery.notes.{unique}"
    config = ServiceConfig(
        database_url=SecretStr(pg.dsn),
        db_schema="recovery",
        amqp_url=SecretStr(broker.url(amqp_url)),
        exchange=exchange,
        outbox_poll_seconds=0.1,
        stall_seconds=2.0,
    )
    made: list[Consumer] = []
    async with AsyncExitStack() as later:
        later.push_async_callback(delete_topology, amqp_url, exchanges=[exchange])
        later.push_async_callback(broker.close)
        later.push_async_callback(lambda: delete_topology(amqp_url, queues=made[0].queue_names))
        app = make_app(config, queue, made)
        client: TestClient[Any, Any] = await later.enter_async_context(TestClient(TestServer(app)))
        pool: asyncpg.Pool = app[POOL]
        assert (await probe(client, "/readyz"))[0] == 200
        first = await enqueue_noted(pool, range(0, 5))
        await eventually(lambda: pool.fetchval("SELECT count(*) = 5 FROM notes"))

        # Rows committed while the broker is away stay pending in the outbox...
        await broker.close()
        pending = await enqueue_noted(pool, range(5, 10))
        # ... and then Postgres goes away too, for longer than the stall threshold.
        await asyncio.to_thread(pg.stop)
        await broker.open()
        await eventually(lambda: app[BUS].connected, within=20)
        during = make_event("test", Noted(n=10), subject="note/10")
        await app[BUS].publish(during)  # delivered to a consumer that cannot reach its database
        await asyncio.sleep(config.stall_seconds + 0.5)
        status, body = await probe(client, "/readyz")
        assert status == 503
        assert "_db_ready" in body["failed"]
        assert "outbox-relay-recovery made no progress" in body["failed"]["progress"]
        assert (await probe(client, "/healthz"))[0] == 200  # waiting cures this: no restart

        await asyncio.to_thread(pg.start)

        async def ready() -> bool:
            return (await probe(client, "/readyz"))[0] == 200

        await eventually(ready, within=30)
        await eventually(lambda: pool.fetchval("SELECT count(*) >= 11 FROM notes"), within=30)
        await asyncio.sleep(1)  # time for a duplicate to show up, if there were one
        rows = await pool.fetch("SELECT event_id FROM notes ORDER BY n")
        assert [r["event_id"] for r in rows] == [*first, *pending, during.id]  # each once
        assert await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 0
        assert (await probe(client, "/healthz"))[0] == 200


async def test_liveness_fails_once_a_background_loop_is_dead_beyond_restarting(
    database_url: str, unique: str
) -> None:
    runs: list[int] = []

    async def broken() -> None:
        runs.append(1)
        raise RuntimeError("cannot go on")

    async def healthy() -> None:
        await asyncio.Event().wait()

    config = ServiceConfig(database_url=SecretStr(database_url), db_schema=f"live_{unique}")
    loops: list[Supervised] = []

    async def background(app: web.Application) -> Any:
        loops.append(supervise(app, Supervised("healthy-loop", healthy)))
        loops.append(
            supervise(app, Supervised("broken-loop", broken, backoff=0.01, max_failures=3))
        )
        yield
        for loop in loops:
            await loop.stop()

    app = create_service_app("liveness", config, introspector=NobodyIntrospector())
    app.cleanup_ctx.append(background)
    async with TestClient(TestServer(app)) as client:
        await eventually(lambda: not loops[1].alive)
        status, body = await probe(client, "/healthz")

    assert len(runs) == 4  # started, restarted three times, then given up on
    assert status == 503
    assert list(body["failed"]) == ["broken-loop"]
    assert "RuntimeError: cannot go on" in body["failed"]["broken-loop"]
