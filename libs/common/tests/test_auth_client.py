"""The introspection client and the auth middleware, against a stand-in token_info endpoint.

The real auth service is exercised in tests/integration; here the stand-in counts calls, so the
cache, single-flight and timeout behaviour can be asserted exactly.
"""

from __future__ import annotations

import asyncio
import base64

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from sage_common.auth import (
    IntrospectionClient,
    auth_middleware,
    parse_authorization,
    principal,
    token_hash,
)
from sage_common.errors import Unauthorized, Unavailable, error_middleware

GOOD = "sage_good-token"


class TokenInfo:
    """A token_info endpoint that knows one token and counts what it is asked."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.delay = 0.0
        self.credentials: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.calls.append(str(form["token"]))
        self.credentials.append(request.headers.get("Authorization", ""))
        await asyncio.sleep(self.delay)
        if form["token"] == GOOD:
            return web.json_response(
                {
                    "active": True,
                    "username": "alice",
                    "groups": ["g"],
                    "scope": "all",
                    "is_approved": True,
                }
            )
        return web.json_response({"active": False})


@pytest.fixture
async def token_info():
    info = TokenInfo()
    app = web.Application()
    app.router.add_post("/auth/token_info", info.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    info.url = str(server.make_url("")).rstrip("/")
    yield info
    await server.close()


def client_for(info: TokenInfo, **kw) -> IntrospectionClient:
    return IntrospectionClient(info.url, "storage", "s3cret", **kw)


@pytest.mark.parametrize(
    "header",
    [
        "sage abc",
        "Sage abc",
        "SAGE abc",
        "Bearer abc",
        "bearer   abc  ",
        "Basic " + base64.b64encode(b"alice:abc").decode(),
    ],
)
def test_accepted_authorization_forms(header):
    assert parse_authorization(header) == "abc"


@pytest.mark.parametrize(
    "header",
    [
        "",
        "sage",
        "sage ",
        "Token abc",
        "abc",
        "sage a b",
        "Basic !!!",
        "sage " + "x" * 600,
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "sage t\u00e9st",
    ],
)
def test_malformed_authorization_is_401(header):
    with pytest.raises(Unauthorized):
        parse_authorization(header)


async def test_answers_are_cached_by_token_hash(token_info):
    client = client_for(token_info, ttl=30)
    try:
        first = await client.introspect(GOOD)
        second = await client.introspect(GOOD)
        assert first is not None and first.username == "alice" and first.groups == ["g"]
        assert second == first
        assert token_info.calls == [GOOD]
        assert list(client._cache) == [token_hash(GOOD)]  # the token itself is never a key
        assert token_info.credentials[0] == "Basic " + base64.b64encode(b"storage:s3cret").decode()
    finally:
        await client.close()


async def test_unknown_tokens_are_cached_briefly(token_info):
    client = client_for(token_info, ttl=30, negative_ttl=0.2)
    try:
        assert await client.introspect("nope") is None
        assert await client.introspect("nope") is None
        assert token_info.calls == ["nope"]
        await asyncio.sleep(0.3)
        assert await client.introspect("nope") is None
        assert token_info.calls == ["nope", "nope"]
    finally:
        await client.close()


async def test_positive_answers_expire_after_the_ttl(token_info):
    client = client_for(token_info, ttl=0.2)
    try:
        await client.introspect(GOOD)
        await asyncio.sleep(0.3)
        await client.introspect(GOOD)
        assert token_info.calls == [GOOD, GOOD]
    finally:
        await client.close()


async def test_concurrent_lookups_of_one_token_share_one_request(token_info):
    token_info.delay = 0.1
    client = client_for(token_info)
    try:
        answers = await asyncio.gather(*(client.introspect(GOOD) for _ in range(20)))
        assert {a.username for a in answers} == {"alice"}
        assert token_info.calls == [GOOD]
    finally:
        await client.close()


async def test_a_slow_auth_service_is_a_503_within_the_timeout(token_info):
    token_info.delay = 5
    client = client_for(token_info, timeout=0.3)
    try:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(Unavailable):
            await client.introspect(GOOD)
        assert loop.time() - start < 2
    finally:
        await client.close()


async def test_an_unreachable_auth_service_is_a_503():
    client = IntrospectionClient("http://127.0.0.1:9", "storage", "s3cret", timeout=1)
    try:
        with pytest.raises(Unavailable):
            await client.introspect(GOOD)
    finally:
        await client.close()


async def whoami(request: web.Request) -> web.Response:
    who = principal(request)
    return web.json_response({"username": who.username if who else None})


@pytest.fixture
async def app_client(token_info):
    client = client_for(token_info)
    app = web.Application(middlewares=[error_middleware, auth_middleware(lambda: client)])
    app.router.add_get("/whoami", whoami)
    async with TestClient(TestServer(app)) as http:
        yield http
    await client.close()


async def test_middleware_puts_the_principal_on_the_request(app_client):
    resp = await app_client.get("/whoami", headers={"Authorization": f"sage {GOOD}"})
    assert resp.status == 200 and (await resp.json()) == {"username": "alice"}


async def test_middleware_lets_anonymous_through_as_none(app_client):
    resp = await app_client.get("/whoami")
    assert resp.status == 200 and (await resp.json()) == {"username": None}


@pytest.mark.parametrize("header", ["garbage", "sage", "Basic ???", "sage unknown-token"])
async def test_middleware_answers_401_for_bad_or_unknown_tokens(app_client, header):
    resp = await app_client.get("/whoami", headers={"Authorization": header})
    assert resp.status == 401
    assert "error" in await resp.json(content_type=None)
