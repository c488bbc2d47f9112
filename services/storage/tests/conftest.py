"""Fixtures of the storage service's own tests: the app on the real Postgres, with an in-memory
object store and a local token table standing in for S3 and the auth service."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from sage_common.auth import Principal
from sage_storage.app import create_app
from sage_storage.config import Config, MiB
from sage_storage.memory import MemoryObjectStore
from sage_storage.service import Storage
from sage_storage.state import STORAGE


@dataclass
class Tokens:
    """An `Introspector` over a dict: token -> principal."""

    known: dict[str, Principal] = field(default_factory=dict)

    def add(
        self,
        username: str,
        *,
        admin: bool = False,
        approved: bool = True,
        groups: tuple[str, ...] = (),
    ) -> str:
        token = secrets.token_urlsafe(16)
        self.known[token] = Principal(
            username=username,
            is_admin=admin,
            is_approved=approved,
            groups=list(groups),
            scopes=["all"],
        )
        return token

    async def introspect(self, token: str) -> Principal | None:
        return self.known.get(token)


@dataclass
class Api:
    client: TestClient
    tokens: Tokens
    objects: MemoryObjectStore

    @property
    def storage(self) -> Storage:
        return self.client.server.app[STORAGE]

    def auth(self, token: str | None) -> dict[str, str]:
        return {"Authorization": f"sage {token}"} if token else {}

    async def bucket(self, token: str, **query: Any) -> dict[str, Any]:
        query.setdefault("type", "training-data")
        async with self.client.post("/api/v1/objects", params=query, headers=self.auth(token)) as r:
            assert r.status == 200, await r.text()
            return await r.json()

    async def put(
        self,
        token: str | None,
        bucket_id: str,
        key: str,
        data: bytes,
        headers: dict[str, str] | None = None,
    ) -> Any:
        return await self.client.put(
            f"/api/v1/objects/{bucket_id}/{key}",
            data=data,
            headers={**self.auth(token), **(headers or {})},
        )


MakeApi = Callable[..., Awaitable[Api]]


@pytest.fixture
async def make_api(database_url: str) -> AsyncIterator[MakeApi]:
    """Start the app with its own schema; keyword arguments override settings."""
    started: list[TestClient] = []

    async def make(**settings: Any) -> Api:
        settings.setdefault("part_size", 5 * MiB)
        settings.setdefault("max_upload_bytes", 1024 * MiB)
        settings.setdefault("garbage_grace_seconds", 0)
        objects = MemoryObjectStore(min_part=settings["part_size"])
        tokens = Tokens()
        config = Config(
            database_url=SecretStr(database_url),
            db_schema=f"storage_{uuid.uuid4().hex[:10]}",
            sweep_interval_seconds=3600,
            drain_seconds=2,
            **settings,
        )
        client = TestClient(TestServer(create_app(config, objects=objects, introspector=tokens)))
        await client.start_server()
        started.append(client)
        return Api(client, tokens, objects)

    yield make
    for client in started:
        await client.close()


@pytest.fixture
async def api(make_api: MakeApi) -> Api:
    return await make_api(part_size=5 * MiB)
