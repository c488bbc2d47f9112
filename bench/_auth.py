"""The auth service in the bench's own process, with one approved user and a token for them."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from sage_auth import service as auth_service
from sage_auth.app import create_app as create_auth_app
from sage_auth.config import Config as AuthConfig
from sage_auth.models import CreateUser
from sage_auth.state import STORE
from tests.support.ports import free_port


@asynccontextmanager
async def running_auth(dsn: str, clients: dict[str, str]) -> AsyncIterator[tuple[str, str, str]]:
    """Yields the service's URL, an approved user and their token (every scope); `clients` are
    the service accounts (client id: secret) it accepts."""
    with tempfile.TemporaryDirectory() as keys:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        config = AuthConfig(database_url=dsn, key_dir=keys, public_url=url, service_clients=clients)
        runner = web.AppRunner(create_auth_app(config), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            user = f"bench-{uuid.uuid4().hex[:6]}"
            store = runner.app[STORE]
            await auth_service.create_user(store, None, CreateUser(username=user, is_approved=True))
            token = await auth_service.issue_token(store, user, "bench", ["all"], 1)
            yield url, user, token.token
        finally:
            await runner.cleanup()
