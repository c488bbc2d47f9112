"""Side by side with SAGE's own servers: the same catalogue, the same reads, one run.

ECR: 1,000 app versions (`bench/_ecr_seed.py`'s catalogue) in ours and in SAGE's ECR
(waggle-sensor/sage-ecr, Flask + MySQL under gunicorn, see `bench/_sage_ecr.py` for what its
checkout must hold). Both serve the same viewer the same pages of 100 (`GET /api/apps` here,
`GET /apps` there, each walked by its own continuation token) and one app's detail, to CLIENTS
concurrent clients; req/s, p50 and p99 for each, and ours / theirs (throughput: above 1 is ahead;
latency: below 1 is ahead). Ours runs as it is deployed, `python -m sage_ecr` in one process, with
its listing cache and with it off; theirs as SAGE deploys it, four gunicorn workers.

Storage: see `bench/_sage_storage.py`.

Settings (environment): SAGE_ECR_CHECKOUT and SAGE_STORAGE_API_CHECKOUT name the checkouts; each
part is skipped, saying why, when its setting is empty. SAGE_BENCH_MYSQL_HOST/_PORT/_USER/
_PASSWORD (default root@127.0.0.1:3306, no password) is the MySQL or MariaDB server their
databases are created on (and dropped after); SAGE_BENCH_REDIS (127.0.0.1:6379) the Redis
sage-ecr caches tokens in. Only loopback addresses are used.
"""

from __future__ import annotations

import os
import secrets
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from bench import _ecr_seed as seed
from bench import _sage_ecr as theirs
from bench import _sage_storage
from bench._auth import running_auth
from bench._load import closed_loop
from bench._sage_servers import child_server
from sage_ecr.app import create_app
from sage_ecr.config import Config
from sage_ecr.state import ECR
from tests.support.ports import free_port

ADMIN_DSN = os.environ.get("SAGE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
APPS, PAGE, CLIENTS = 1000, 100, 32
WARMUP_SECONDS, RUN_SECONDS = 1.0, 5.0
DETAIL = ("bench0", "app3", "1.4.0")  # an app the viewer owns, in both catalogues


def skipped(what: str, why: str) -> dict[str, Any]:
    return {"name": f"{what}: skipped", "value": None, "unit": "", "detail": why}


async def _load(urls: list[str], headers: dict[str, str]) -> dict[str, float]:
    async def one(http: aiohttp.ClientSession, i: int) -> None:
        async with http.get(urls[i % len(urls)]) as resp:
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"GET {urls[i % len(urls)]} answered {resp.status}")

    return await closed_loop(
        one,
        clients=CLIENTS,
        warmup_seconds=WARMUP_SECONDS,
        run_seconds=RUN_SECONDS,
        headers=headers,
    )


async def _walk(first: str, headers: dict[str, str]) -> tuple[list[str], int, str]:
    """The URLs of the pages of a listing it serves, following its continuation token; the
    app count; and why it stopped early, if it did. SAGE ends with the token "N/A" or leaves it
    out, ours with null."""
    urls: list[str] = []
    count = 0
    url: str | None = first
    async with aiohttp.ClientSession(headers=headers) as http:
        while url is not None and len(urls) < 2 * APPS // PAGE:
            async with http.get(url) as resp:
                if resp.status != 200:
                    return urls, count, f"page {len(urls) + 1}: {resp.status} {await resp.text()}"
                page = await resp.json()
            urls.append(url)
            count += len(page["data"])
            token = (page.get("pagination") or {}).get("continuationToken")
            url = f"{first}&continue={token}" if token and token != "N/A" else None
    return urls, count, ""


def _compare(name: str, ours: dict[str, float], them: dict[str, float], note: str) -> list[dict]:
    return [
        {
            "name": f"{name} req/s, ours vs sage",
            "value": ours["rps"],
            "unit": "req/s",
            "baseline": them["rps"],
            "ratio": ours["rps"] / them["rps"],
            "target": ">= 1",
            "detail": note,
        },
        *(
            {
                "name": f"{name} {p}, ours vs sage",
                "value": ours[p],
                "unit": "ms",
                "baseline": them[p],
                "ratio": ours[p] / them[p],
                "target": "<= 1",
            }
            for p in ("p50", "p99")
        ),
    ]


def _ours_env(settings: dict[str, Any], port: int, cache: int) -> dict[str, str]:
    env = {f"SAGE_ECR_{k.upper()}": str(v) for k, v in settings.items()}
    return env | {
        "SAGE_ECR_PORT": str(port),
        "SAGE_ECR_LISTING_CACHE_ENTRIES": str(cache),
        "SAGE_ECR_LOG_LEVEL": "WARNING",
    }


@asynccontextmanager
async def _ours(settings: dict[str, Any], cache: int) -> AsyncIterator[str]:
    """Our ECR as a process of its own, as it is deployed; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = _ours_env(settings, port, cache)
    async with child_server(
        [sys.executable, "-m", "sage_ecr"], env=env, ready_url=f"{url}/api/healthy"
    ):
        yield url


async def ecr_rows() -> list[dict[str, Any]]:
    folder = theirs.checkout()
    if folder is None:
        return [skipped("sage-ecr", "SAGE_ECR_CHECKOUT is not set (see bench/_sage_ecr.py)")]
    if why := theirs.missing(folder):
        return [skipped("sage-ecr", why)]
    database = f"sage_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{database}"')
    dsn = ADMIN_DSN.rpartition("/")[0] + f"/{database}"
    secret = secrets.token_urlsafe(32)
    try:
        async with running_auth(dsn, {"ecr-api": secret}) as (auth_url, viewer, token):
            settings = {
                "database_url": dsn,
                "use_bus": "false",
                "auth_url": auth_url,
                "client_id": "ecr-api",
                "client_secret": secret,
                "introspection_ttl": 300,
                "db_pool_max": 16,
            }
            runner = web.AppRunner(create_app(Config(**settings)), access_log=None)
            await runner.setup()
            try:
                ecr = runner.app[ECR]
                catalogue = await seed.template(ecr, viewer)
                async with ecr.store.pool.acquire() as conn:
                    await seed.grow(conn, catalogue, APPS)
                    rows = await theirs.their_rows(conn, viewer)
            finally:
                await runner.cleanup()
            return await _side_by_side(folder, settings, rows, token)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()


async def _side_by_side(
    folder: Path, settings: dict[str, Any], rows: list[Any], token: str
) -> list[dict[str, Any]]:
    """Theirs, then ours with its listing cache, then ours without: same pages, same load."""
    ours_headers = {"Authorization": f"sage {token}"}
    their_headers = {"Authorization": f"sage {theirs.TOKEN}"}
    detail = "/".join(DETAIL)
    async with theirs.running(folder, rows) as their_url:
        their_pages, _, stopped = await _walk(f"{their_url}/apps?limit={PAGE}", their_headers)
        if not their_pages:
            raise RuntimeError(f"sage-ecr serves no listing: {stopped}")
        their_list = await _load(their_pages, their_headers)
        _, their_all, _ = await _walk(f"{their_url}/apps?limit={APPS}", their_headers)
        their_detail = await _load([f"{their_url}/apps/{detail}"], their_headers)
    async with _ours(settings, 1024) as url:
        our_pages, our_count, _ = await _walk(f"{url}/api/apps?limit={PAGE}", ours_headers)
        # The same pages on both sides: as many as sage-ecr could serve.
        our_pages = our_pages[: len(their_pages)]
        paths = [u.removeprefix(url) for u in our_pages]
        our_list = await _load(our_pages, ours_headers)
        our_detail = await _load([f"{url}/api/apps/{detail}"], ours_headers)
    async with _ours(settings, 0) as url:
        our_cold = await _load([url + p for p in paths], ours_headers)
    note = (
        f"{len(their_pages)} page(s) of {PAGE} on each side; visible: ours {our_count} apps, "
        f"sage-ecr {their_all} (in one page of {APPS}); {CLIENTS} clients; sage-ecr under "
        f"gunicorn --workers={theirs.WORKERS}, ours one process with its listing cache"
        + (f"\nsage-ecr stops at {stopped}" if stopped else "")
    )
    return [
        *_compare("ecr GET apps (100/page)", our_list, their_list, note),
        *_compare("ecr GET apps, our cache off", our_cold, their_list, "every page from Postgres"),
        *_compare(f"ecr GET app detail {detail}", our_detail, their_detail, ""),
    ]


async def main() -> list[dict[str, Any]]:
    return [*await ecr_rows(), *await _sage_storage.rows()]
