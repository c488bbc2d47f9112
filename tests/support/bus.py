"""Helpers for tests of code that uses the bus: waiting, clean-up and a TCP proxy.

`TcpProxy` sits between a Bus and the real broker so a test can cut the connection (an outage)
without stopping the shared RabbitMQ.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable

import aio_pika
from yarl import URL


async def eventually(
    check: Callable[[], Awaitable[bool] | bool], *, within: float = 10.0, every: float = 0.02
) -> None:
    """Wait until `check()` is true; fail the test with AssertionError after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(every)


async def delete_topology(
    amqp_url: str, *, exchanges: Iterable[str] = (), queues: Iterable[str] = ()
) -> None:
    """Remove what a test declared on the shared broker."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        for queue in queues:
            await channel.queue_delete(queue)
        for exchange in exchanges:
            await channel.exchange_delete(exchange)


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; `close()` cuts all connections, refuses new ones."""

    def __init__(self, target_host: str = "127.0.0.1", target_port: int = 5672) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def url(self, url: str) -> str:
        """`url` (amqp://, postgresql://) with its host and port replaced by this proxy's."""
        return str(URL(url).with_host("127.0.0.1").with_port(self.port))

    async def open(self) -> None:
        """Listen (again, on the same port once it had one)."""
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def drop(self) -> None:
        """Cut the open connections but keep listening (a network blip)."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        tasks, self._tasks = list(self._tasks), set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        """Stop listening and cut every connection (the broker is gone)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        await self.drop()
        if server is not None:
            await server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        await asyncio.gather(*pumps, return_exceptions=True)
        for w in (writer, up_writer):
            w.transport.abort()
            self._writers.discard(w)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
