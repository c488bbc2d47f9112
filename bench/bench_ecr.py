"""`GET /api/apps` under load: 1,000 versions, 100 a page, authenticated, 64 concurrent clients.

The ECR API runs for real (Postgres, the real auth service for token introspection, the full
middleware stack) and is compared with a bare aiohttp handler that answers the same pages from
memory, measured the same way in the same run: by one load client in a process of its own
(`bench._load.get_load`), which takes the services in turn, a few seconds each, several times
over. Clients walk the pages by continuation token.
The listing cache (emptied on every catalogue change, see `sage_ecr.cache`) serves repeated pages;
the same service with the cache off is measured against the bare handler too, and each filter
and a full-text search against that uncached plain listing; the plan Postgres runs for each is
printed (`EXPLAIN ANALYZE`). Then the catalogue grows to 10,000 and 100,000 versions and the
first page's latency (one client, cache off) is printed against its 1,000-version figure, so that
a cost that grows with the catalogue shows. `bench/_ecr_seed.py` says what the catalogue holds.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from bench import _ecr_seed as seed
from bench._load import get_load, latency_ms
from sage_auth import service as auth_service
from sage_auth.app import create_app as create_auth_app
from sage_auth.config import Config as AuthConfig
from sage_auth.models import CreateUser
from sage_auth.state import STORE
from sage_common.auth import Principal
from sage_ecr import service
from sage_ecr import service_access as access
from sage_ecr import store_listing as listing
from sage_ecr.app import create_app
from sage_ecr.config import Config
from sage_ecr.models import ListQuery
from sage_ecr.service import Ecr
from sage_ecr.state import ECR
from tests.support.faults import ServiceProcess
from tests.support.ports import free_port

ADMIN_DSN = os.environ.get("SAGE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
APPS, PAGE, CLIENTS = 1000, 100, 64
# Each service is measured ROUNDS times RUN_SECONDS, the services in turn (each round after
# WARMUP_SECONDS of the same load), so that the other load on this shared machine falls on all.
WARMUP_SECONDS, RUN_SECONDS, ROUNDS = 1.0, 2.0, 3
FILTER_SECONDS, FILTER_ROUNDS = 1.5, 3
# Each filter SAGE's clients use, and a full-text search, against the plain listing.
FILTERS = {
    "public": "public=true",
    "nopublic": "nopublic=true",
    "shared": "shared=true",
    "owner": "owner=true",
    "namespace": "namespace=bench3",
    "search": "q=audio",
}
GROWTH = (1_000, 10_000, 100_000)
GROWN = {"plain": "", "public": "public=true", "search": "q=audio"}
SAMPLES = 40


def _stopper(process: ServiceProcess) -> Callable[[], Awaitable[None]]:
    async def stop() -> None:
        await asyncio.to_thread(process.kill)

    return stop


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


async def _load(
    targets: dict[str, list[str]],
    headers: dict[str, str],
    seconds: float = RUN_SECONDS,
    rounds: int = ROUNDS,
) -> dict[str, dict[str, float]]:
    """CLIENTS concurrent clients cycling through each target's URLs, the targets in turn;
    throughput and latency of each target's measured windows."""
    return await get_load(
        targets,
        clients=CLIENTS,
        warmup_seconds=WARMUP_SECONDS,
        run_seconds=seconds,
        rounds=rounds,
        headers=headers,
    )


async def _pages(
    base: str, headers: dict[str, str], params: str = ""
) -> tuple[list[str], dict[str, bytes]]:
    """The page URLs (first page, then each continuation token) and each page's body."""
    urls, bodies = [], {}
    first = f"{base}/api/apps?limit={PAGE}" + (f"&{params}" if params else "")
    url: str | None = first
    async with aiohttp.ClientSession(headers=headers) as http:
        while url is not None:
            async with http.get(url) as resp:
                body = await resp.read()
                page = await resp.json()
            urls.append(url)
            bodies[url.removeprefix(base)] = body
            token = page["pagination"]["continuationToken"]
            url = f"{first}&continue={token}" if token else None
    return urls, bodies


def _bare_app(bodies: dict[str, bytes]) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=bodies[request.path_qs], content_type="application/json")

    app = web.Application()
    app.router.add_get("/api/apps", handler)
    return app


async def _explain(ecr: Ecr, who: Principal, params: str) -> str:
    """`EXPLAIN ANALYZE` of a listing's first page as the service builds the query, run as a
    prepared statement several times over, so the plan shown is the one Postgres settles on."""
    query = ListQuery.model_validate(dict(urllib.parse.parse_qsl(f"limit={PAGE}&{params}")))
    flt = service.app_filter(who, query)
    sql, args = listing.listing_sql(access.viewer(who, ecr.policy), flt, None, query.limit)
    async with ecr.store.pool.acquire() as conn:
        for _ in range(6):
            rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *args)
    return "\n".join(r[0] for r in rows)


def _execution_ms(plan: str) -> float:
    return float(plan.rpartition("Execution Time: ")[2].split()[0])


async def _latency(url: str, headers: dict[str, str]) -> float:
    """The median time of SAMPLES requests one after the other, in milliseconds."""
    times = []
    async with aiohttp.ClientSession(headers=headers) as http:
        for _ in range(SAMPLES):
            started = time.perf_counter()
            async with http.get(url) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"GET answered {resp.status}")
            times.append(time.perf_counter() - started)
    return latency_ms(times)["p50"]


async def _growth(
    ecr: Ecr, catalogue: seed.Catalogue, base: str, headers: dict[str, str], who: Principal
) -> dict[int, dict[str, tuple[float, str]]]:
    """Each GROWN listing's first page at each GROWTH size: p50 latency and its plan."""
    found: dict[int, dict[str, tuple[float, str]]] = {}
    for size in GROWTH:
        async with ecr.store.pool.acquire() as conn:
            await seed.grow(conn, catalogue, size)
        found[size] = {}
        for label, params in GROWN.items():
            url = f"{base}/api/apps?limit={PAGE}" + (f"&{params}" if params else "")
            found[size][label] = (await _latency(url, headers), await _explain(ecr, who, params))
    return found


def _filter_rows(
    plain: dict[str, float], filtered: dict[str, tuple[int, dict[str, float], str]]
) -> list[dict[str, Any]]:
    """Each filter's throughput against the plain listing's, both with the cache off."""
    return [
        {
            "name": f"ecr GET /api/apps?{FILTERS[label]}, cache off",
            "value": figures["rps"],
            "unit": "req/s",
            "baseline": plain["rps"],
            "ratio": figures["rps"] / plain["rps"],
            "target": ">= 0.5",
            "detail": f"{pages} pages; p99 {figures['p99']:.1f} ms "
            f"(plain {plain['p99']:.1f} ms)\n{plan}",
        }
        for label, (pages, figures, plan) in filtered.items()
    ]


def _growth_rows(growth: dict[int, dict[str, tuple[float, str]]]) -> list[dict[str, Any]]:
    """Latency and Postgres' execution time at each size against the smallest size's: a ratio
    that follows the size (10, 100) is linear, one near 1 does not grow."""
    rows = []
    smallest = min(growth)
    for label in GROWN:
        base_ms, base_plan = growth[smallest][label]
        for size, figures in growth.items():
            ms, plan = figures[label]
            rows.append(
                {
                    "name": f"ecr {label} page @{size:,} versions p50",
                    "value": ms,
                    "unit": "ms",
                    "baseline": base_ms,
                    "ratio": ms / base_ms,
                    "target": None,
                    "detail": f"size x{size // smallest}; Postgres executes it in "
                    f"{_execution_ms(plan):.2f} ms (x{_execution_ms(plan) / _execution_ms(base_plan):.1f})"
                    + (f"\n{plan}" if size == max(growth) else ""),
                }
            )
    return rows


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
            ecr = ecr_runner.app[ECR]
            catalogue = await seed.template(ecr, owner)
            async with ecr.store.pool.acquire() as conn:
                await seed.grow(conn, catalogue, APPS)
            headers = {"Authorization": f"sage {token}"}
            urls, bodies = await _pages(ecr_url, headers)
            visible = len(urls)
            # The same service with its listing cache off: every request goes to Postgres. As it
            # ships (`python -m sage_ecr`, its worker processes on one port), and in one process.
            shipped = ServiceProcess(
                "sage_ecr",
                "SAGE_ECR_",
                Config(**settings, listing_cache_entries=0, port=free_port()),
                Path(tempfile.mkdtemp(prefix="bench-ecr-")) / "ecr.log",
            )
            shipped.start()
            cleanup.append(_stopper(shipped))
            cold_runner, one_url = await _serve(
                create_app(Config(**settings, listing_cache_entries=0))
            )
            cleanup.append(cold_runner.cleanup)
            bare_runner, bare_url = await _serve(_bare_app(bodies))
            cleanup.append(bare_runner.cleanup)
            async with aiohttp.ClientSession() as http:
                await shipped.ready(http)
            workers, _ = Config(**settings).worker_count()
            cold_url = shipped.url
            measured = await _load(
                {
                    "ours": urls,
                    "cold": [cold_url + u.removeprefix(ecr_url) for u in urls],
                    "one": [one_url + u.removeprefix(ecr_url) for u in urls],
                    "bare": [bare_url + u.removeprefix(ecr_url) for u in urls],
                },
                headers,
            )
            ours, cold, bare = measured["ours"], measured["cold"], measured["bare"]
            one = measured["one"]

            who = Principal(username=owner, is_approved=True)
            plain_plan = await _explain(ecr, who, "")
            pages = {"plain": [cold_url + u.removeprefix(ecr_url) for u in urls]}
            plans = {}
            for label, params in FILTERS.items():
                pages[label], _ = await _pages(cold_url, headers, params)
                plans[label] = await _explain(ecr, who, params)
            loads = await _load(pages, headers, FILTER_SECONDS, FILTER_ROUNDS)
            plain = loads["plain"]
            filtered = {label: (len(pages[label]), loads[label], plans[label]) for label in FILTERS}
            growth = await _growth(ecr, catalogue, cold_url, headers, who)
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
            "name": f"ecr GET /api/apps, listing cache off ({workers} workers, as it ships)",
            "value": cold["rps"],
            "unit": "req/s",
            "baseline": bare["rps"],
            "ratio": cold["rps"] / bare["rps"],
            "target": ">= 0.3",
            "detail": f"{visible} pages of {PAGE} visible to the viewer\n" + plain_plan,
        },
        {
            "name": "  the same in one process (SAGE_ECR_WORKERS=1)",
            "value": one["rps"],
            "unit": "req/s",
            "baseline": bare["rps"],
            "ratio": one["rps"] / bare["rps"],
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
        *_filter_rows(plain, filtered),
        *_growth_rows(growth),
    ]
