"""A consumer process that dies (os._exit) on every delivery of a poison event, as a consumer
whose handler crashes the interpreter would; a test starts it again and again.

Usage: python dying_consumer.py DATABASE_URL SCHEMA AMQP_URL EXCHANGE QUEUE DELIVERY_LIMIT
"""

from __future__ import annotations

import asyncio
import os
import sys

import asyncpg

from sage_common import db
from sage_common.bus import Bus, Consumer
from sage_common.events import CloudEvent


class Dying(Consumer):
    async def handle(self, conn: asyncpg.Connection, event: CloudEvent) -> None:
        if event.data.get("poison"):
            os._exit(3)  # no ack, no reject: the broker sees the connection drop
        await conn.execute("INSERT INTO effects (event_id) VALUES ($1)", event.id)


async def main(dsn: str, schema: str, amqp: str, exchange: str, queue: str, limit: str) -> None:
    pool = await db.create_pool(dsn, schema, max_size=2)
    await db.migrate(pool, schema)
    await pool.execute("CREATE TABLE IF NOT EXISTS effects (event_id text NOT NULL)")
    bus = Bus(amqp, exchange=exchange, service="dying")
    await bus.connect()
    consumer = Dying(pool, bus, name=queue, routing_keys=["test.pinged"], delivery_limit=int(limit))
    await consumer.start()
    print("consuming", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:7]))
