"""A small real aiohttp server that answers as the auth, storage and ECR APIs are documented to.

It is a stand-in for unit tests of the client only: in memory, with knobs to make it fail (a 503
before an upload succeeds, a download cut half way, a hung answer). It runs in its own thread so
that the command line's `asyncio.run` can talk to it from a synchronous test.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

GOOD_TOKEN = "good-token"
NOW = "2024-05-06T18:41:19Z"


def problem(status: int, detail: str, **headers: str) -> web.Response:
    body = {
        "type": "about:blank",
        "title": "x",
        "status": status,
        "detail": detail,
        "error": detail,
    }
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type="application/problem+json",
        headers=headers,
    )


@dataclass
class Failure:
    status: int
    text: str
    content_type: str = "application/problem+json"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class State:
    """What the stand-in holds and what the tests set and inspect."""

    tokens: dict[str, str] = field(default_factory=lambda: {GOOD_TOKEN: "alice"})
    user_tokens: list[dict[str, Any]] = field(default_factory=list)
    buckets: dict[str, dict[str, Any]] = field(default_factory=dict)
    grants: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    objects: dict[str, dict[str, bytes]] = field(default_factory=dict)
    apps: dict[str, dict[str, Any]] = field(default_factory=dict)
    namespaces: list[dict[str, Any]] = field(default_factory=list)
    ecr_grants: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    pipeline: list[tuple[str, str]] = field(default_factory=list)
    # After a rebuild, this many status answers still show the version as it was before it.
    stale_statuses: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    failures: dict[tuple[str, str], list[Failure]] = field(default_factory=dict)
    fail_uploads: int = 0
    cut_downloads: int = 0
    hang_seconds: float = 0.0
    log: str = "step 1/2: FROM scratch\nstep 2/2: COPY app /\ndone\n"
    log_calls: int = 0
    log_calls_to_finish: int = 0
    # The text form of the logs: each call shows the next step ({"log", "complete", "build_id"}),
    # the last one stays; empty: `log`, complete. `text_logs=False` answers JSON (an older ECR).
    text_logs: bool = True
    log_steps: list[dict[str, Any]] = field(default_factory=list)
    text_log_calls: list[int] = field(default_factory=list)  # the offsets asked
    log_chunk_bytes: int = 1 << 20
    profile: dict[str, Any] | None = None

    def fail(self, method: str, path: str, failure: Failure, times: int = 1) -> None:
        self.failures.setdefault((method, path), []).extend([failure] * times)


STATE = web.AppKey("state", State)
USER = web.RequestKey("user", str)


@web.middleware
async def recorder(request: web.Request, handler: Any) -> web.StreamResponse:
    state = request.app[STATE]
    state.requests.append(
        {
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "headers": dict(request.headers),
        }
    )
    queued = state.failures.get((request.method, request.path))
    if queued:
        f = queued.pop(0)
        await request.read()
        return web.Response(
            status=f.status, text=f.text, content_type=f.content_type, headers=f.headers
        )
    if state.hang_seconds:
        await asyncio.sleep(state.hang_seconds)
    auth = request.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "sage" or token not in state.tokens:
        return problem(401, "invalid, expired or revoked token", **{"WWW-Authenticate": "sage"})
    request[USER] = state.tokens[token]
    return await handler(request)


# -- auth --------------------------------------------------------------------------------------


async def whoami(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "username": request[USER],
            "name": "Alice A.",
            "email": "alice@example.org",
            "is_admin": False,
            "is_approved": True,
            "groups": ["reviewers"],
            "scopes": ["all"],
        }
    )


async def create_token(request: web.Request) -> web.Response:
    body = await request.json()
    state = request.app[STATE]
    token = {
        "id": str(len(state.user_tokens) + 1),
        "name": body["name"],
        "scopes": body.get("scopes") or ["all"],
        "expires_at": None,
        "created_at": NOW,
        "last_used_at": None,
        "revoked": False,
        "_body": body,
    }
    state.user_tokens.append(token)
    secret = f"secret-{uuid.uuid4().hex}"
    state.tokens[secret] = request[USER]
    shown = {k: v for k, v in token.items() if k not in ("last_used_at", "revoked", "_body")}
    return web.json_response({**shown, "token": secret}, status=201)


async def list_tokens(request: web.Request) -> web.Response:
    tokens = request.app[STATE].user_tokens
    return web.json_response([{k: v for k, v in t.items() if k != "_body"} for t in tokens])


async def revoke_token(request: web.Request) -> web.StreamResponse:
    for t in request.app[STATE].user_tokens:
        if t["id"] == request.match_info["token_id"]:
            t["revoked"] = True
            return web.Response(status=204)
    return problem(404, "no such token")


def make_app(state: State) -> web.Application:
    from .standin_ecr import ecr_routes
    from .standin_storage import storage_routes

    app = web.Application(middlewares=[recorder], client_max_size=64 * 1024 * 1024)
    app[STATE] = state
    app.add_routes(
        [
            web.get("/auth/whoami", whoami),
            web.post("/auth/tokens", create_token),
            web.get("/auth/tokens", list_tokens),
            web.delete("/auth/tokens/{token_id}", revoke_token),
            *storage_routes(),
            *ecr_routes(STATE),
        ]
    )
    return app


class StandIn:
    """The server, on 127.0.0.1 and a free port, in a thread of its own."""

    def __init__(self) -> None:
        self.state = State()
        self.url = ""
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StandIn:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the stand-in server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        runner = web.AppRunner(make_app(self.state), shutdown_timeout=0.1)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        port = runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())
        self._loop.close()
