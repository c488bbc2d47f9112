"""`GET /api/apps` under load: 1,000 apps, 100 a page, authenticated, 64 concurrent clients.

The ECR API runs for real (Postgres, the real auth service for token introspection, the full
middleware stack) and is compared with a bare aiohttp handler that answers the same pages from
memory, measured the same way in the same run. Clients walk the ten pages by continuation token.
The listing cache (emptied on every catalogue change, see `sage_ecr.cache`) serves repeated pages;
the same service with the cache off is measured too, for the record, without a target.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import tempfile
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from bench._load import closed_loop
from sage_auth import service as auth_service
from sage_auth.app import create_app as create_auth_app
from sage_auth.config import Config as AuthConfig
from sage_auth.models import CreateUser
from sage_auth.state import STORE
from sage_common.auth import Principal
from sage_ecr import service_submit
from sage_ecr.app import create_app
from sage_ecr.config import Config
from sage_ecr.handlers import ECR
from tests.support.ecr import app_spec

ADMIN_DSN = os.environ.get("SAGE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
APPS, PAGE, CLIENTS = 1000, 100, 64
WARMUP_SECONDS, RUN_SECONDS = 1.5, 6.0


def _socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    sock = _socket()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return runner, f"http://127.0.0.1:{sock.getsockname()[1]}"


async def _load(urls: list[str], headers: dict[str, str]) -> dict[str, float]:
    """Run CLIENTS workers cycling through `urls`; throughput and latency of the measured window."""

    async def one(http: aiohttp.ClientSession, i: int) -> None:
        async with http.get(urls[i % len(urls)]) as resp:
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"GET answered {resp.status}")

    return await closed_loop(
        one,
        clients=CLIENTS,
        warmup_seconds=WARMUP_SECONDS,
        run_seconds=RUN_SECONDS,
        headers=headers,
    )


async def _seed(app: web.Application, owner: str) -> None:
    """1,000 app versions (10 namespaces x 10 apps x 10 versions) through the real use case."""
    ecr = app[ECR]
    who = Principal(username=owner, is_approved=True)
    gate = asyncio.Semaphore(8)

    async def one(n: int) -> None:
        spec = app_spec(f"bench{n // 100}", f"app{(n // 10) % 10}", f"1.{n % 10}.0")
        async with gate:
            await service_submit.submit(ecr, who, service_submit.validate_spec(spec))

    await asyncio.gather(*(one(n) for n in range(APPS)))


async def _pages(base: str, headers: dict[str, str]) -> tuple[list[str], dict[str, bytes]]:
    """The ten page URLs (first page, then each continuation token) and each page's body."""
    urls, bodies = [], {}
    url: str | None = f"{base}/api/apps?limit={PAGE}"
    async with aiohttp.ClientSession(headers=headers) as http:
        while url is not None:
            async with http.get(url) as resp:
                body = await resp.read()
                page = await resp.json()
            urls.append(url)
            bodies[url.removeprefix(base)] = body
            token = page["pagination"]["continuationToken"]
            url = f"{base}/api/apps?limit={PAGE}&continue={token}" if token else None
    return urls, bodies


def _bare_app(bodies: dict[str, bytes]) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=bodies[request.path_qs], content_type="application/json")

    app = web.Application()
    app.router.add_get("/api/apps", handler)
    return app


async def main() -> list[dict[str, Any]]:
    database = f"sage_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{database}"')
    dsn = ADMIN_DSN.rpartition("/")[0] + f"/{database}"
    cleanup: list[Callable[[], Any]] = []
    try:
        secret = secrets.token_urlsafe(32)
        with tempfile.TemporaryDirectory() as keys:
            auth_sock = _socket()
            auth_url = f"http://127.0.0.1:{auth_sock.getsockname()[1]}"
            auth_config = AuthConfig(
                database_url=dsn,
                key_dir=keys,
                public_url=auth_url,
                service_clients={"ecr-api": secret},
            )
            auth_runner = web.AppRunner(create_auth_app(auth_config), access_log=None)
            await auth_runner.setup()
            await web.SockSite(auth_runner, auth_sock).start()
            cleanup.append(auth_runner.cleanup)
            owner = f"bench-{uuid.uuid4().hex[:6]}"
            store = auth_runner.app[STORE]
            await auth_service.create_user(
                store, None, CreateUser(username=owner, is_approved=True)
            )
            token = (await auth_service.issue_token(store, owner, "bench", ["all"], 1)).token

            settings = {
                "database_url": dsn,
                "use_bus": False,
                "auth_url": auth_url,
                "client_id": "ecr-api",
                "client_secret": secret,
                "introspection_ttl": 300,
                "db_pool_max": 16,
            }
            ecr_runner, ecr_url = await _serve(create_app(Config(**settings)))
            cleanup.append(ecr_runner.cleanup)
            await _seed(ecr_runner.app, owner)
            headers = {"Authorization": f"sage {token}"}
            urls, bodies = await _pages(ecr_url, headers)
            if len(urls) != APPS // PAGE:
                raise RuntimeError(f"expected {APPS // PAGE} pages, walked {len(urls)}")
            ours = await _load(urls, headers)
            # The same service with its listing cache off: every request goes to Postgres.
            cold_runner, cold_url = await _serve(
                create_app(Config(**settings, listing_cache_entries=0))
            )
            cleanup.append(cold_runner.cleanup)
            cold = await _load([cold_url + u.removeprefix(ecr_url) for u in urls], headers)

            bare_runner, bare_url = await _serve(_bare_app(bodies))
            cleanup.append(bare_runner.cleanup)
            bare = await _load([bare_url + u.removeprefix(ecr_url) for u in urls], headers)
    finally:
        for step in reversed(cleanup):
            await step()
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()
    return [
        {
            "name": "ecr GET /api/apps (100/page, 64 clients)",
            "value": ours["rps"],
            "unit": "req/s",
            "baseline": bare["rps"],
            "ratio": ours["rps"] / bare["rps"],
            "target": ">= 0.5",
        },
        {
            "name": "ecr GET /api/apps p99 latency",
            "value": ours["p99"],
            "unit": "ms",
            "baseline": bare["p99"],
            "ratio": ours["p99"] / bare["p99"],
            "target": None,
        },
        {
            "name": "ecr GET /api/apps p50 latency",
            "value": ours["p50"],
            "unit": "ms",
            "baseline": bare["p50"],
            "ratio": ours["p50"] / bare["p50"],
            "target": None,
        },
        {
            "name": "ecr GET /api/apps, listing cache off",
            "value": cold["rps"],
            "unit": "req/s",
            "baseline": bare["rps"],
            "ratio": cold["rps"] / bare["rps"],
            "target": None,
        },
        {
            "name": "ecr GET /api/apps p99, listing cache off",
            "value": cold["p99"],
            "unit": "ms",
            "baseline": bare["p99"],
            "ratio": cold["p99"] / bare["p99"],
            "target": None,
        },
    ]
