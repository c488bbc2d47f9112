"""The OpenAPI document says what a path parameter may hold, as the router matches it."""

from __future__ import annotations

import re

from aiohttp import web

from sage_common.openapi import build_document


async def nothing(request: web.Request) -> web.Response:
    return web.Response()


def test_path_parameters_carry_the_routers_patterns() -> None:
    app = web.Application()
    app.router.add_get("/things/{bucket}/{key:.*}", nothing)
    app.router.add_get("/digits/{n:[0-9]{1,3}}", nothing)
    doc = build_document(app, "test")
    params = {
        p["name"]: p["schema"]["pattern"]
        for ops in doc["paths"].values()
        for p in ops["get"]["parameters"]
    }
    assert set(doc["paths"]) == {"/things/{bucket}/{key}", "/digits/{n}"}
    assert re.match(params["bucket"], "a-bucket") and not re.match(params["bucket"], "a/b")
    assert not re.match(params["bucket"], "")
    assert re.match(params["key"], "dir/file.jpg") and re.match(params["key"], "")
    assert re.match(params["n"], "123") and not re.match(params["n"], "1234")
