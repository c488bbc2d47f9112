"""The error middleware: one problem+json shape, and nothing internal leaks from a crash."""

from __future__ import annotations

import logging

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import BaseModel

from sage_common.errors import NUL_MESSAGE, NotFound, error_middleware
from sage_common.web import read_json, request_id_middleware


class Body(BaseModel):
    name: str
    size: int


async def crash(request: web.Request) -> web.Response:
    raise RuntimeError("secret-internal-detail at /srv/db password=hunter2")


async def missing(request: web.Request) -> web.Response:
    raise NotFound("no such bucket")


async def validate(request: web.Request) -> web.Response:
    body = await read_json(request, Body)
    return web.json_response(body.model_dump())


@pytest.fixture
async def client() -> TestClient:
    app = web.Application(middlewares=[request_id_middleware, error_middleware])
    app.router.add_get("/crash", crash)
    app.router.add_get("/missing", missing)
    app.router.add_post("/validate", validate)
    async with TestClient(TestServer(app)) as c:
        yield c


async def test_unexpected_exception_is_a_bare_500_that_leaks_nothing(client, caplog):
    with caplog.at_level(logging.ERROR):
        resp = await client.get("/crash")
    text = await resp.text()
    assert resp.status == 500
    assert resp.content_type == "application/problem+json"
    assert "secret" not in text and "hunter2" not in text and "RuntimeError" not in text
    assert (await resp.json())["detail"] == "Internal Server Error"
    # the traceback goes to the log, where operators look
    assert any(
        r.exc_info and "secret-internal-detail" in str(r.exc_info[1]) for r in caplog.records
    )


async def test_domain_error_renders_problem_json_with_error_member(client):
    resp = await client.get("/missing")
    assert resp.status == 404
    body = await resp.json(content_type=None)
    assert body == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "no such bucket",
        "error": "no such bucket",
    }


async def test_unknown_route_is_problem_json_404(client):
    resp = await client.get("/nowhere")
    assert resp.status == 404
    assert resp.content_type == "application/problem+json"


async def test_wrong_method_is_405_with_allow(client):
    resp = await client.delete("/missing")
    assert resp.status == 405
    assert "GET" in resp.headers["Allow"]


async def test_validation_errors_name_every_field(client):
    resp = await client.post("/validate", json={"size": "big"})
    body = await resp.json(content_type=None)
    assert resp.status == 422
    locs = sorted(tuple(e["loc"]) for e in body["errors"])
    assert locs == [("name",), ("size",)]


async def test_wrong_content_type_is_415(client):
    resp = await client.post("/validate", data="name=x", headers={"Content-Type": "text/plain"})
    assert resp.status == 415


async def test_invalid_json_is_400(client):
    resp = await client.post(
        "/validate", data="{nope", headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400


async def test_request_id_is_echoed_or_made(client):
    resp = await client.get("/missing", headers={"X-Request-ID": "abc-123"})
    assert resp.headers["X-Request-ID"] == "abc-123"
    resp = await client.get("/missing", headers={"X-Request-ID": "bad id; drop"})
    assert (
        resp.headers["X-Request-ID"] != "bad id; drop" and len(resp.headers["X-Request-ID"]) == 32
    )


async def test_nul_anywhere_in_a_json_body_is_422_naming_where(client):
    resp = await client.post("/validate", json={"name": "x", "size": 1, "tags": [{"a": "b\x00"}]})
    body = await resp.json(content_type=None)
    assert resp.status == 422
    assert body["error"] == NUL_MESSAGE
    assert body["errors"][0]["loc"] == ["tags", "0", "a"]


@pytest.mark.parametrize(
    ("sql", "value", "detail"),
    [
        (
            "INSERT INTO t (short) VALUES ($1)",
            "too long",
            "a value is longer than its field allows",
        ),
        ("INSERT INTO t (short) VALUES ($1)", "a\x00", NUL_MESSAGE),
        ("INSERT INTO t (small) VALUES ($1)", 2**40, "a number is out of its field's range"),
        ("SELECT $1::numeric(3)::int", "99999999999", "a number is out of its field's range"),
    ],
    ids=["too-long", "nul", "int-argument", "numeric-cast"],
)
async def test_values_postgres_refuses_are_422_saying_why(database_url, sql, value, detail):
    async def store(request: web.Request) -> web.Response:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("CREATE TEMP TABLE t (short varchar(3), small int)")
            await conn.execute(sql, value)
        finally:
            await conn.close()
        return web.json_response({})

    app = web.Application(middlewares=[error_middleware])
    app.router.add_post("/store", store)
    async with TestClient(TestServer(app)) as client:
        resp = await client.post("/store")
        body = await resp.json(content_type=None)
    assert resp.status == 422
    assert body["error"] == detail
