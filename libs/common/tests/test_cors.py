"""CORS: which origins match, preflights answered before auth, and one Allow-Origin on every answer
to an allowed origin (errors and streamed answers included), none when CORS is off."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from sage_common.auth import auth_middleware
from sage_common.cors import OriginPolicy, enable_cors
from sage_common.errors import NotFound, error_middleware

PORTAL = "http://localhost:3000"


def test_origin_patterns_match_hosts_and_ports_only():
    policy = OriginPolicy(
        [
            "http://localhost:*",
            "http://127.0.0.1:*",
            "https://*.sagecontinuum.org",
            "https://x.org/",
        ]
    )
    assert policy.allows("http://localhost:3000")
    assert policy.allows("http://127.0.0.1:8080")
    assert policy.allows("https://portal.sagecontinuum.org")
    assert policy.allows("https://x.org")  # a trailing slash in the setting is ignored
    assert not policy.allows("http://localhost")  # the pattern asks for a port
    assert not policy.allows("http://localhost.evil.org:80")
    assert not policy.allows("https://evil.org/.sagecontinuum.org")
    assert not policy.allows("https://a@b.sagecontinuum.org")
    assert not policy.allows("http://portal.sagecontinuum.org")  # scheme is exact
    assert not policy.allows("null") and not policy.allows(None) and not policy.allows("")
    anyone = OriginPolicy(["*"])
    assert anyone.allows("http://portal.example.org") and not anyone.allows("null")
    assert not OriginPolicy([]) and not OriginPolicy([" "])


class RefusesEveryToken:
    """An introspector for which every token is invalid (the auth middleware answers 401)."""

    def __init__(self) -> None:
        self.asked = 0

    async def introspect(self, token: str) -> None:
        self.asked += 1
        return None


async def hello(request: web.Request) -> web.Response:
    return web.json_response({"hello": "world"})


async def missing(request: web.Request) -> web.Response:
    raise NotFound("no such thing")


async def stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await response.prepare(request)
    await response.write(b"chunk")
    await response.write_eof()
    return response


def make_app(origins: list[str], introspector: RefusesEveryToken | None = None) -> web.Application:
    refuses = introspector or RefusesEveryToken()
    app = web.Application(middlewares=[error_middleware, auth_middleware(lambda: refuses)])
    enable_cors(app, origins)
    app.router.add_get("/hello", hello)
    app.router.add_get("/missing", missing)
    app.router.add_get("/stream", stream)
    return app


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(make_app(["http://localhost:*"]))) as c:
        yield c


def preflight(method: str = "GET", headers: str = "authorization") -> dict[str, str]:
    return {
        "Origin": PORTAL,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
    }


async def test_preflight_with_authorization_is_answered_before_auth():
    refuses = RefusesEveryToken()
    async with TestClient(TestServer(make_app(["http://localhost:*"], refuses))) as c:
        # a preflight carries no token; one that does is still answered without asking about it
        headers = {**preflight("PUT", "authorization,content-type"), "Authorization": "sage x"}
        resp = await c.options("/hello", headers=headers)
    assert resp.status == 204 and refuses.asked == 0
    assert resp.headers.getall("Access-Control-Allow-Origin") == [PORTAL]
    allowed = {h.strip().lower() for h in resp.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert "PUT" in resp.headers["Access-Control-Allow-Methods"]
    assert "Origin" in resp.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in resp.headers


async def test_preflight_of_a_path_that_does_not_exist_is_still_answered(client):
    resp = await client.options("/nowhere", headers=preflight())
    assert resp.status == 204 and resp.headers["Access-Control-Allow-Origin"] == PORTAL


async def test_preflight_from_an_origin_not_configured_is_refused(client):
    resp = await client.options("/hello", headers={**preflight(), "Origin": "http://evil.org"})
    assert resp.status == 403
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_answers_errors_and_streams_carry_one_allow_origin(client):
    for path, status in (("/hello", 200), ("/missing", 404), ("/stream", 200)):
        resp = await client.get(path, headers={"Origin": PORTAL})
        assert resp.status == status
        assert resp.headers.getall("Access-Control-Allow-Origin") == [PORTAL], path
        assert "X-Request-ID" in resp.headers["Access-Control-Expose-Headers"]
    resp = await client.get("/hello", headers={"Origin": "http://evil.org"})
    assert resp.status == 200 and "Access-Control-Allow-Origin" not in resp.headers
    assert resp.headers["Vary"] == "Origin"


async def test_a_refused_token_answer_is_readable_by_the_portal(client):
    resp = await client.get("/hello", headers={"Origin": PORTAL, "Authorization": "sage bad"})
    assert resp.status == 401
    assert resp.headers.getall("Access-Control-Allow-Origin") == [PORTAL]
    assert "WWW-Authenticate" in resp.headers["Access-Control-Expose-Headers"]


async def test_no_origins_means_no_cors_at_all():
    async with TestClient(TestServer(make_app([]))) as c:
        resp = await c.options("/hello", headers=preflight())
        assert resp.status == 405
        resp = await c.get("/hello", headers={"Origin": PORTAL})
        assert "Access-Control-Allow-Origin" not in resp.headers and "Vary" not in resp.headers
