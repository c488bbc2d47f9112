"""A service's real aiohttp app served on loopback for a test, and stopped by it."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Generic, TypeVar

from aiohttp import web

C = TypeVar("C")


@dataclass
class Running(Generic[C]):
    """A service answering on `url` until `stop()`."""

    app: web.Application
    url: str
    config: C
    runner: web.AppRunner

    async def stop(self) -> None:
        await self.runner.cleanup()


def free_socket() -> socket.socket:
    """A listening-ready TCP socket on a free loopback port (bind first, so the port is ours)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


async def serve(app: web.Application, config: C, sock: socket.socket | None = None) -> Running[C]:
    """Serve `app` on `sock`, a free loopback port when none is given."""
    sock = sock or free_socket()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return Running(runner.app, f"http://127.0.0.1:{sock.getsockname()[1]}", config, runner)
