"""JSON logs carry the service and request id; metrics count routes by template, not raw path."""

from __future__ import annotations

import io
import json
import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from sage_common.logs import setup_logging
from sage_common.metrics import metrics_handler, metrics_middleware
from sage_common.web import request_id_middleware

log = logging.getLogger("test.observability")


async def show(request: web.Request) -> web.Response:
    log.info("showing", extra={"bucket": request.match_info["id"]})
    return web.json_response({"id": request.match_info["id"]})


@pytest.fixture
async def client(unique):
    app = web.Application(middlewares=[request_id_middleware, metrics_middleware(f"obs-{unique}")])
    app.router.add_get("/things/{id}", show)
    app.router.add_get("/metrics", metrics_handler)
    async with TestClient(TestServer(app)) as c:
        yield c


@pytest.fixture
def captured():
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    setup_logging("obs-test", "INFO")
    stream = io.StringIO()
    root.handlers[0].setStream(stream)
    yield stream
    root.handlers[:], _ = saved
    root.setLevel(saved[1])


async def test_log_lines_are_json_with_service_and_request_id(client, captured):
    resp = await client.get("/things/42", headers={"X-Request-ID": "req-77"})
    assert resp.status == 200
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    mine = [entry for entry in lines if entry["message"] == "showing"]
    assert mine == [
        {
            "time": mine[0]["time"],
            "level": "INFO",
            "logger": "test.observability",
            "message": "showing",
            "request_id": "req-77",
            "service": "obs-test",
            "bucket": "42",
        }
    ]


async def test_metrics_count_requests_by_route_template(client, unique):
    for thing in ("a", "b", "c"):
        await client.get(f"/things/{thing}")
    service = f"obs-{unique}"
    labels = {"service": service, "method": "GET", "route": "/things/{id}", "status": "200"}
    assert REGISTRY.get_sample_value("sage_http_requests_total", labels) == 3
    count = REGISTRY.get_sample_value(
        "sage_http_request_duration_seconds_count",
        {"service": service, "method": "GET", "route": "/things/{id}"},
    )
    assert count == 3
    text = await (await client.get("/metrics")).text()
    assert f'route="/things/{{id}}",service="{service}",status="200"' in text
    assert "/things/a" not in text
