"""Token checks under load: the auth middleware with a warm cache, and `POST /auth/token_info`.

1. A service frame (`create_service_app`, every middleware) answering a trivial handler: requests
   carrying a token (the real IntrospectionClient, cache warm) against the same requests with no
   token, which skip the check. Target: throughput ratio >= 0.9.
2. The real auth service's `POST /auth/token_info` (Basic service login, form parsing, the one
   indexed query) against a bare aiohttp handler that runs the same query on the same pool size.
   Target: throughput ratio >= 0.6; p99 latency reported.

Each server runs in its own process (as in production) so the load generator does not share its
event loop; 10,000 other tokens sit in the table. Rounds alternate and the median counts.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from bench._load import closed_loop
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
ADMIN_DSN = os.environ.get("SAGE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
CLIENTS, WARMUP_SECONDS, RUN_SECONDS, ROUNDS = 32, 1.0, 4.0, 3
OTHER_TOKENS = 10_000
BENCH_CLIENT = "bench"


# ------------------------------------------------------------------------ the servers ----
def _frame_app(auth_url: str, secret: str) -> web.Application:
    from sage_common.auth import principal
    from sage_common.config import ServiceConfig
    from sage_common.web import create_service_app, json_response

    async def ping(request: web.Request) -> web.Response:
        who = principal(request)
        return json_response({"ok": True, "user": who.username if who else None})

    config = ServiceConfig(
        auth_url=auth_url, client_id=BENCH_CLIENT, client_secret=secret, introspection_ttl=3600
    )
    return create_service_app(
        "bench",
        config,
        routes=[web.get("/ping", ping)],
        scopes={("GET", "/ping"): None},
        use_database=False,
    )


def _bare_app(dsn: str) -> web.Application:
    """What token_info does at its core, and nothing else: read the form, one query, JSON."""
    from sage_auth.store import LOOKUP
    from sage_common import db
    from sage_common.auth import token_hash

    pool_key = web.AppKey("pool", asyncpg.Pool)

    async def lookup(request: web.Request) -> web.Response:
        form = await request.post()
        row = await request.app[pool_key].fetchrow(LOOKUP, token_hash(str(form["token"])))
        if row is None:
            return web.json_response({"active": False})
        return web.json_response(
            {
                "active": True,
                "username": row["username"],
                "scope": " ".join(row["scopes"]),
                "exp": int(row["expires_at"].timestamp()),
                "groups": list(row["groups"]),
                "is_admin": row["is_admin"],
                "is_approved": row["is_approved"],
            }
        )

    async def pool_ctx(app: web.Application) -> Any:
        app[pool_key] = await db.create_pool(dsn, "auth", min_size=1, max_size=10)
        yield
        await app[pool_key].close()

    app = web.Application()
    app.cleanup_ctx.append(pool_ctx)
    app.router.add_post("/lookup", lookup)
    return app


def _auth_app(dsn: str, secret: str, key_dir: str) -> web.Application:
    from sage_auth.app import create_app
    from sage_auth.config import Config

    config = Config(database_url=dsn, service_clients={BENCH_CLIENT: secret}, key_dir=key_dir)
    return create_app(config)


def serve(kind: str, port: int, *args: str) -> None:
    """Entry point of a server process: `python -m bench.bench_auth KIND PORT ARGS...`."""
    makers = {"frame": _frame_app, "bare": _bare_app, "auth": _auth_app}
    web.run_app(makers[kind](*args), host="127.0.0.1", port=port, access_log=None, print=None)


# ------------------------------------------------------------------------- the harness ----
async def _start(kind: str, *args: str, ready_path: str = "/healthz") -> tuple[Any, str]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.bench_auth",
        kind,
        str(port),
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + 60
        while True:
            if proc.returncode is not None:
                raise RuntimeError(f"the {kind} server exited with {proc.returncode}")
            try:
                async with http.get(url + ready_path) as resp:
                    if resp.status < 500:
                        return proc, url
            except aiohttp.ClientConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {kind} server did not start")
            await asyncio.sleep(0.1)


async def _load(method: str, url: str, **request: Any) -> dict[str, float]:
    """CLIENTS workers repeating one request; throughput and latencies of the measured window."""

    async def one(http: aiohttp.ClientSession, _: int) -> None:
        async with http.request(method, url, **request) as resp:
            body = await resp.read()
            if resp.status != 200 or b'"active": false' in body:
                raise RuntimeError(f"{method} {url} answered {resp.status}: {body[:200]!r}")

    return await closed_loop(
        one, clients=CLIENTS, warmup_seconds=WARMUP_SECONDS, run_seconds=RUN_SECONDS
    )


async def _compare(a: tuple[Any, ...], b: tuple[Any, ...]) -> tuple[dict[str, float], ...]:
    """Alternate rounds of `a` and `b` (method, url, kwargs); the median of each figure."""
    runs_a, runs_b = [], []
    for _ in range(ROUNDS):
        runs_a.append(await _load(a[0], a[1], **a[2]))
        runs_b.append(await _load(b[0], b[1], **b[2]))
    return tuple(
        {k: statistics.median(r[k] for r in runs) for k in runs[0]} for runs in (runs_a, runs_b)
    )


async def _seed(dsn: str) -> str:
    """Migrate the auth schema, add a user in two groups and 10,000 other tokens; one token back."""
    from sage_auth import service
    from sage_auth.app import MIGRATIONS
    from sage_auth.models import CreateGroup, CreateUser
    from sage_auth.store import Store
    from sage_common import db

    pool = await db.create_pool(dsn, "auth")
    try:
        await db.migrate(pool, "auth", MIGRATIONS)
        store = Store(pool)
        await service.create_user(store, None, CreateUser(username="bench", is_approved=True))
        for group in ("bench-a", "bench-b"):
            await service.create_group(store, None, CreateGroup(name=group))
            await service.add_member(store, None, group, "bench")
        expires = datetime.now(UTC) + timedelta(days=1)
        await pool.executemany(
            "INSERT INTO tokens (token_hash, username, name, scopes, expires_at)"
            " VALUES ($1, 'bench', 'other', '{all}', $2)",
            [(secrets.token_hex(32), expires) for _ in range(OTHER_TOKENS)],
        )
        await pool.execute("ANALYZE tokens")
        return (await service.issue_token(store, "bench", "bench", ["all"], 1)).token
    finally:
        await pool.close()


async def main() -> list[dict[str, Any]]:
    name = f"sage_bench_{uuid.uuid4().hex[:12]}"
    base = ADMIN_DSN.rpartition("/")[0]
    dsn = f"{base}/{name}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    procs: list[Any] = []
    try:
        token = await _seed(dsn)
        secret = secrets.token_urlsafe(32)
        with tempfile.TemporaryDirectory() as keys:
            auth, auth_url = await _start("auth", dsn, secret, keys)
            procs.append(auth)
            bare, bare_url = await _start("bare", dsn, ready_path="/nothing")
            frame, frame_url = await _start("frame", auth_url, secret)
            procs += [bare, frame]

            with_token = {"headers": {"Authorization": f"sage {token}"}}
            checked, unchecked = await _compare(
                ("GET", f"{frame_url}/ping", with_token), ("GET", f"{frame_url}/ping", {})
            )
            basic = {"Authorization": aiohttp.encode_basic_auth(BENCH_CLIENT, secret)}
            form = {"data": {"token": token}}
            info, plain = await _compare(
                ("POST", f"{auth_url}/auth/token_info", {**form, "headers": basic}),
                ("POST", f"{bare_url}/lookup", form),
            )
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.terminate()
                await proc.wait()
        admin = await asyncpg.connect(ADMIN_DSN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return [
        {
            "name": "auth middleware, warm cache (req/s)",
            "value": checked["rps"],
            "unit": "req/s",
            "baseline": unchecked["rps"],
            "ratio": checked["rps"] / unchecked["rps"],
            "target": ">= 0.9",
        },
        {
            "name": "auth middleware, warm cache p99",
            "value": checked["p99"],
            "unit": "ms",
            "baseline": unchecked["p99"],
            "ratio": checked["p99"] / unchecked["p99"],
        },
        {
            "name": "POST /auth/token_info (req/s)",
            "value": info["rps"],
            "unit": "req/s",
            "baseline": plain["rps"],
            "ratio": info["rps"] / plain["rps"],
            "target": ">= 0.6",
        },
        {
            "name": "POST /auth/token_info p99",
            "value": info["p99"],
            "unit": "ms",
            "baseline": plain["p99"],
            "ratio": info["p99"] / plain["p99"],
        },
        {
            "name": "POST /auth/token_info p50",
            "value": info["p50"],
            "unit": "ms",
            "baseline": plain["p50"],
            "ratio": info["p50"] / plain["p50"],
        },
    ]


if __name__ == "__main__":
    if len(sys.argv) >= 3:
        serve(sys.argv[1], int(sys.argv[2]), *sys.argv[3:])
    else:
        print(json.dumps(asyncio.run(main()), indent=2))
