"""The aiohttp application every service starts from, and the helpers handlers share.

`create_service_app` wires the middlewares (request id, metrics, errors, auth), the pool and its
migrations, the bus with its outbox relay, and the routes every service has: `/healthz`, `/readyz`,
`/metrics` and `/openapi.json`.

`/readyz` is the truth about serving: 503, with the reason per check, while a dependency is
unreachable or the relay or a consumer makes no progress for `stall_seconds`. `/healthz` fails
only for what waiting cannot cure (a background loop dead beyond restarting), so an orchestrator
restarts the process then and only then (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel

from . import db
from .auth import IntrospectionClient, Introspector, auth_middleware
from .bus import Bus, Consumer, OutboxRelay
from .config import ServiceConfig
from .cors import enable_cors
from .errors import NUL_MESSAGE, BadRequest, Unprocessable, UnsupportedMediaType, error_middleware
from .logs import new_request_id, request_id
from .metrics import metrics_handler, metrics_middleware
from .openapi import openapi_handler
from .scopes import RouteScopes, ScopeTable
from .supervise import Supervised, describe

log = logging.getLogger(__name__)

CONFIG = web.AppKey("config", ServiceConfig)
SERVICE = web.AppKey("service", str)
POOL = web.AppKey("pool", asyncpg.Pool)
INTROSPECTOR = web.AppKey("introspector", Introspector)
READY_CHECKS = web.AppKey("ready_checks", list)
LIVE_CHECKS = web.AppKey("live_checks", list)
BUS = web.AppKey("bus", Bus)
SCOPES = web.AppKey("scopes", RouteScopes)

ReadyCheck = Callable[[web.Application], Awaitable[None]]
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
M = TypeVar("M", bound=BaseModel)
JSON_TYPE = "application/json"


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Carry the caller's X-Request-ID (when well formed) or a new one through logs and events."""
    incoming = request.headers.get("X-Request-ID", "")
    rid = incoming if _REQUEST_ID_RE.match(incoming) else new_request_id()
    token = request_id.set(rid)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers["X-Request-ID"] = rid
        raise
    finally:
        request_id.reset(token)
    if not response.prepared:
        response.headers["X-Request-ID"] = rid
    return response


def json_response(
    data: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """JSON out: pydantic models (or lists of them) by their JSON dump, the rest by json.dumps."""
    if isinstance(data, BaseModel):
        text = data.model_dump_json(by_alias=True)
    elif isinstance(data, list) and data and isinstance(data[0], BaseModel):
        text = "[" + ",".join(m.model_dump_json(by_alias=True) for m in data) + "]"
    else:
        text = json.dumps(data, default=str)
    return json_text_response(text, status=status, headers=headers)


def json_text_response(
    text: str | bytes, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """JSON already encoded, as `Content-Type: application/json` exactly: bytes, as aiohttp's
    `text=` adds `; charset=utf-8`, which RFC 8259 lacks and the SAGE edge scheduler refuses."""
    body = text.encode() if isinstance(text, str) else text
    return web.Response(body=body, status=status, content_type=JSON_TYPE, headers=headers)


def with_trailing_slashes(routes: Iterable[web.RouteDef]) -> list[web.RouteDef]:
    """`routes`, and each again with a trailing slash (SAGE's Flask services answer both forms);
    the copies are unnamed and left out of the OpenAPI document, which shows each route once."""
    given = list(routes)
    aliases = [
        web.RouteDef(r.method, r.path + "/", r.handler, {**r.kwargs, "name": None})
        for r in given
        if not r.path.endswith("/")
    ]
    return given + aliases


async def read_json(request: web.Request, model: type[M] | None = None) -> Any:
    """The JSON body, validated against `model` when given; 415 for other content types."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType("send the body as application/json")
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("the body is not valid JSON") from None
    refuse_nul(data)
    return model.model_validate(data) if model is not None else data


def refuse_nul(data: Any) -> None:
    """422 when a string of a JSON document holds NUL, which no text column can store."""
    found = _nul_path(data)
    if found is not None:
        raise Unprocessable(
            NUL_MESSAGE,
            errors=[{"loc": found, "msg": NUL_MESSAGE, "type": "string_nul_character"}],
        )


def _nul_path(data: Any) -> list[str] | None:
    """Where the first string (or key) holding NUL is; a loop, so deep nesting cannot overflow."""
    stack: list[tuple[Any, list[str]]] = [(data, [])]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return path
        elif isinstance(value, dict):
            for key, item in value.items():
                if "\x00" in key:
                    return [*path, key.replace("\x00", "\\u0000")]
                stack.append((item, [*path, key]))
        elif isinstance(value, list):
            stack.extend((item, [*path, str(i)]) for i, item in enumerate(value))
    return None


async def _run_checks(app: web.Application, checks: list[ReadyCheck]) -> dict[str, str]:
    failed: dict[str, str] = {}
    for check in checks:
        try:
            await check(app)
        except Exception as exc:  # noqa: BLE001 - a probe reports any failure by name
            failed[getattr(check, "__name__", "check")] = describe(exc)
    return failed


async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers and every background loop runs (or is being restarted)."""
    failed = await _run_checks(request.app, request.app.get(LIVE_CHECKS, []))
    if failed:
        log.error("liveness failing", extra={"failed": failed})
        body = {"status": "dead", "service": request.app[SERVICE], "failed": failed}
        return json_response(body, status=503)
    return json_response({"status": "ok", "service": request.app[SERVICE]})


async def readyz(request: web.Request) -> web.Response:
    """Ready: every dependency (Postgres, RabbitMQ, ...) answered just now, and the relay and
    consumers make progress."""
    failed = await _run_checks(request.app, request.app[READY_CHECKS])
    if failed:
        body = {"status": "unavailable", "service": request.app[SERVICE], "failed": failed}
        return json_response(body, status=503, headers={"Retry-After": "5"})
    return json_response({"status": "ready", "service": request.app[SERVICE]})


class Stalled(RuntimeError):
    """A part of the service cannot make progress (readiness says why)."""


def watch(app: web.Application, loop: Supervised) -> Supervised:
    """Make liveness fail once `loop` is dead beyond restarting (its owner starts and stops it)."""

    async def background_task(_: web.Application) -> None:
        if loop.dead_reason is not None:
            raise Stalled(f"{loop.name}: {loop.dead_reason}")

    background_task.__name__ = loop.name
    app.setdefault(LIVE_CHECKS, []).append(background_task)
    return loop


def supervise(app: web.Application, loop: Supervised) -> Supervised:
    """Start `loop` supervised and watch it (`watch`); call from a cleanup context, and stop the
    loop there at shutdown."""
    watch(app, loop)
    loop.start()
    return loop


async def _db_ready(app: web.Application) -> None:
    await db.ping(app[POOL])


def database_context(
    migrations: Path | None, *, reset_sessions: bool = True
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Open the pool, apply migrations (under the advisory lock), close the pool at shutdown."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        config = app[CONFIG]
        pool = await db.create_pool(
            config.database_url.get_secret_value(),
            config.db_schema,
            min_size=config.db_pool_min,
            max_size=config.db_pool_max,
            reset_sessions=reset_sessions,
        )
        app[POOL] = pool
        extra = (migrations,) if migrations is not None else ()
        await db.migrate(pool, config.db_schema, *extra)
        app[READY_CHECKS].append(_db_ready)
        yield
        await pool.close()

    return ctx


async def _bus_ready(app: web.Application) -> None:
    if not app[BUS].connected:
        raise ConnectionError("the RabbitMQ connection is down")


def _progress_check(
    outbox: OutboxRelay, consumers: list[Consumer], stall_seconds: float
) -> tuple[ReadyCheck, ReadyCheck]:
    """Readiness (relay and consumers make progress) and liveness (the relay loop lives)."""

    async def progress(_: web.Application) -> None:
        reasons = [outbox.stalled(stall_seconds), *(c.stalled(stall_seconds) for c in consumers)]
        found = [r for r in reasons if r]
        if found:
            raise Stalled("; ".join(found))

    async def outbox_relay(_: web.Application) -> None:
        if not outbox.alive:
            raise Stalled(outbox.stalled(0) or "the outbox relay is not running")

    return progress, outbox_relay


async def _watch_consumers(
    bus: Bus, consumers: list[Consumer], stall_seconds: float, every: float = 1.0
) -> None:
    """Restart a consumer whose channel stayed closed while the connection is up (the robust
    connection restores channels after a reconnect; this catches one that it did not)."""
    down: dict[str, float] = {}
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(every)
        for consumer in consumers:
            if not bus.connected or not consumer.channel_closed:
                down.pop(consumer.name, None)
                continue
            since = down.setdefault(consumer.name, loop.time())
            if loop.time() - since > stall_seconds:
                log.error(
                    "consumer channel stayed closed; restarting the consumer",
                    extra={"consumer": consumer.name},
                )
                await consumer.stop(grace=0)
                await consumer.start()
                down.pop(consumer.name, None)


def bus_context(
    consumers: Callable[[web.Application], Iterable[Consumer]],
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Connect the bus, start the outbox relay and the consumers `consumers(app)` builds; stop all.

    Append it to `app.cleanup_ctx` after the database context: the relay and consumers need POOL.
    """

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        config, service = app[CONFIG], app[SERVICE]
        bus = Bus(config.amqp_url.get_secret_value(), exchange=config.exchange, service=service)
        await bus.connect()
        app[BUS] = bus
        app[READY_CHECKS].append(_bus_ready)
        outbox = OutboxRelay(
            app[POOL], bus, service=service, poll_seconds=config.outbox_poll_seconds
        )
        started: list[Consumer] = []
        watcher: Supervised | None = None
        stall = config.stall_seconds
        try:
            await outbox.start()
            for consumer in consumers(app):
                await consumer.start()
                started.append(consumer)
            progress, relay_alive = _progress_check(outbox, started, stall)
            app[READY_CHECKS].append(progress)
            app.setdefault(LIVE_CHECKS, []).append(relay_alive)
            if started:
                watch = Supervised("consumer-watch", lambda: _watch_consumers(bus, started, stall))
                watcher = supervise(app, watch)
            yield
        finally:
            if watcher is not None:
                await watcher.stop()
            for consumer in reversed(started):
                await consumer.stop()
            await outbox.stop()
            await bus.close()

    return ctx


async def _introspection_context(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    client = IntrospectionClient(
        config.auth_url,
        config.client_id,
        config.client_secret.get_secret_value(),
        ttl=config.introspection_ttl,
        negative_ttl=config.introspection_negative_ttl,
        timeout=config.introspection_timeout,
    )
    app[INTROSPECTOR] = client
    yield
    await client.close()


def create_service_app(
    service: str,
    config: ServiceConfig,
    *,
    routes: Iterable[web.AbstractRouteDef] = (),
    scopes: ScopeTable | None = None,
    admin_scope: str | None = None,
    migrations: Path | None = None,
    use_database: bool = True,
    introspector: Introspector | None = None,
    client_max_size: int | None = None,
    reset_sessions: bool = True,
) -> web.Application:
    """The common frame of a service; the caller adds its own cleanup contexts and consumers.

    `introspector` checks tokens locally (as the auth service does); without it, the service asks
    `config.auth_url` with its client credentials. In production, an empty or known default secret
    raises `InsecureConfig` here, before anything starts. `scopes` is the route -> scope table
    (sage_common.scopes): a route missing from it refuses every token. A user is an admin here only
    with a token holding `admin_scope` (None: as the user is). `reset_sessions`: `db.create_pool`.
    """
    weak = config.check_secrets()
    if weak:
        log.warning("empty or known default secrets (refused in production): %s", ", ".join(weak))
    route_scopes = RouteScopes(scopes or {}, admin=admin_scope)
    app = web.Application(
        middlewares=[
            request_id_middleware,
            metrics_middleware(service),
            error_middleware,
            auth_middleware(lambda: app[INTROSPECTOR], route_scopes),
        ],
        client_max_size=client_max_size or config.max_body_bytes,
    )
    enable_cors(app, config.cors_origins)
    app[CONFIG] = config
    app[SERVICE] = service
    app[SCOPES] = route_scopes
    app[READY_CHECKS] = []
    app[LIVE_CHECKS] = []
    if use_database:
        app.cleanup_ctx.append(database_context(migrations, reset_sessions=reset_sessions))
    if introspector is not None:
        app[INTROSPECTOR] = introspector
    else:
        app.cleanup_ctx.append(_introspection_context)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/openapi.json", openapi_handler)
    app.router.add_routes(list(routes))
    return app
