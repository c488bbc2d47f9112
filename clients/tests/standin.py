"""A small real aiohttp server that answers as the auth, storage and ECR APIs are documented to.

It is a stand-in for unit tests of the client only: in memory, with knobs to make it fail (a 503
before an upload succeeds, a download cut half way, a hung answer). It runs in its own thread so
that the command line's `asyncio.run` can talk to it from a synchronous test.
"""

from __future__ import annotations

import asyncio
import hashlib
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
    requests: list[dict[str, Any]] = field(default_factory=list)
    failures: dict[tuple[str, str], list[Failure]] = field(default_factory=dict)
    fail_uploads: int = 0
    cut_downloads: int = 0
    hang_seconds: float = 0.0
    log: str = "step 1/2: FROM scratch\nstep 2/2: COPY app /\ndone\n"

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


# -- storage -----------------------------------------------------------------------------------


def _bucket(request: web.Request) -> dict[str, Any]:
    found = request.app[STATE].buckets.get(request.match_info["bucket"])
    if found is None:
        raise web.HTTPNotFound(
            text=json.dumps({"error": "bucket not found", "detail": "bucket not found"}),
            content_type="application/problem+json",
        )
    return found


async def create_bucket(request: web.Request) -> web.Response:
    state = request.app[STATE]
    bid = str(uuid.uuid4())
    bucket = {
        "id": bid,
        "name": request.query.get("name", ""),
        "owner": request[USER],
        "type": request.query["type"],
        "time_created": NOW,
        "time_last_updated": NOW,
        "metadata": {},
    }
    state.buckets[bid] = bucket
    state.grants[bid] = [
        {"granteeType": "USER", "grantee": request[USER], "permission": "FULL_CONTROL"}
    ]
    state.objects[bid] = {}
    return web.json_response(bucket)


async def list_buckets(request: web.Request) -> web.Response:
    return web.json_response(list(request.app[STATE].buckets.values()))


async def bucket_get(request: web.Request) -> web.Response:
    bucket = _bucket(request)
    if "permissions" in request.query:
        return web.json_response(request.app[STATE].grants[bucket["id"]])
    return web.json_response(bucket)


async def bucket_put(request: web.Request) -> web.Response:
    bucket = _bucket(request)
    grant = await request.json()
    request.app[STATE].grants[bucket["id"]].append(grant)
    return web.json_response(grant)


async def bucket_patch(request: web.Request) -> web.Response:
    bucket = _bucket(request)
    bucket.update(await request.json())
    return web.json_response(bucket)


async def bucket_delete(request: web.Request) -> web.Response:
    bucket = _bucket(request)
    state = request.app[STATE]
    if "permissions" in request.query:
        target = request.query["grantee"]
        kept = [
            g
            for g in state.grants[bucket["id"]]
            if not f"{g['granteeType']}:{g['grantee']}:{g['permission']}".startswith(target)
        ]
        state.grants[bucket["id"]] = kept
        return web.json_response({"deleted": [target]})
    del state.buckets[bucket["id"]]
    return web.json_response({"deleted": [bucket["id"]]})


async def object_put(request: web.Request) -> web.Response:
    bucket = _bucket(request)
    state = request.app[STATE]
    key = request.match_info["key"]
    if request.content_type.startswith("multipart/"):
        form = await request.post()
        part = form["file"]
        data = part.file.read()  # type: ignore[union-attr]
        if not key or key.endswith("/"):
            key += part.filename  # type: ignore[union-attr]
    else:
        data = await request.read()
        expected = request.headers.get("X-Checksum-SHA256")
        if expected and expected != hashlib.sha256(data).hexdigest():
            return problem(400, "the body does not match X-Checksum-SHA256")
    if state.fail_uploads:
        state.fail_uploads -= 1
        return problem(503, "storage is restarting", **{"Retry-After": "0"})
    state.objects[bucket["id"]][key] = data
    return web.json_response({"bucket-id": bucket["id"], "key": "/" + key})


def _listing(request: web.Request, bucket_id: str, prefix: str) -> web.Response:
    objects = request.app[STATE].objects[bucket_id]
    recursive = request.query.get("recursive", "").lower() in ("", "true") and (
        "recursive" in request.query
    )
    entries: list[tuple[str, bool]] = []
    seen: set[str] = set()
    for key in sorted(objects):
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix) :]
        if not recursive and "/" in rest:
            folder = rest.split("/", 1)[0] + "/"
            if folder not in seen:
                seen.add(folder)
                entries.append((folder, True))
        else:
            entries.append((rest, False))
    start = int(request.query.get("ContinuationToken", "p0")[1:])
    limit = int(request.query.get("limit", "1000"))
    page = entries[start : start + limit]
    truncated = start + limit < len(entries)
    body: dict[str, Any] = {
        "Name": bucket_id,
        "Prefix": prefix,
        "Contents": [
            {"Key": k, "Size": len(objects[prefix + k]), "LastModified": NOW, "ETag": '"x"'}
            for k, folder in page
            if not folder
        ],
        "CommonPrefixes": [{"Prefix": k} for k, folder in page if folder],
        "IsTruncated": truncated,
    }
    if truncated:
        body["NextContinuationToken"] = f"p{start + limit}"
    return web.json_response(body)


async def object_get(request: web.Request) -> web.StreamResponse:
    bucket = _bucket(request)
    state = request.app[STATE]
    key = request.match_info["key"]
    if not key or key.endswith("/"):
        return _listing(request, bucket["id"], key)
    data = state.objects[bucket["id"]].get(key)
    if data is None:
        return problem(404, "object not found")
    start, status = 0, 200
    if request.headers.get("Range", "").startswith("bytes="):
        start, status = int(request.headers["Range"][6:].rstrip("-")), 206
    response = web.StreamResponse(
        status=status,
        headers={
            "Content-Length": str(len(data) - start),
            "Content-Disposition": f'attachment; filename="{key.rsplit("/", 1)[-1]}"',
            "Content-Type": "application/octet-stream",
        },
    )
    await response.prepare(request)
    if state.cut_downloads:
        state.cut_downloads -= 1
        await response.write(data[start : start + (len(data) - start) // 2])
        request.transport.close()  # type: ignore[union-attr]
        return response
    await response.write(data[start:])
    await response.write_eof()
    return response


async def object_delete(request: web.Request) -> web.Response:
    bucket = _bucket(request)
    key = request.match_info["key"]
    if not key:
        return problem(400, "an empty key names no object")
    if request.app[STATE].objects[bucket["id"]].pop(key, None) is None:
        return problem(404, "object not found")
    return web.json_response({"deleted": ["/" + key]})


def make_app(state: State) -> web.Application:
    from .standin_ecr import ecr_routes

    app = web.Application(middlewares=[recorder], client_max_size=64 * 1024 * 1024)
    app[STATE] = state
    app.add_routes(
        [
            web.get("/auth/whoami", whoami),
            web.post("/auth/tokens", create_token),
            web.get("/auth/tokens", list_tokens),
            web.delete("/auth/tokens/{token_id}", revoke_token),
            web.post("/api/v1/objects", create_bucket),
            web.get("/api/v1/objects", list_buckets),
            web.get("/api/v1/objects/{bucket}", bucket_get),
            web.put("/api/v1/objects/{bucket}", bucket_put),
            web.patch("/api/v1/objects/{bucket}", bucket_patch),
            web.delete("/api/v1/objects/{bucket}", bucket_delete),
            web.put("/api/v1/objects/{bucket}/{key:.*}", object_put),
            web.get("/api/v1/objects/{bucket}/{key:.*}", object_get),
            web.delete("/api/v1/objects/{bucket}/{key:.*}", object_delete),
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
