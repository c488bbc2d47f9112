"""Every JSON answer of every service says `Content-Type: application/json`, with no parameter.

RFC 8259 defines no charset for JSON, and SAGE's edge scheduler refuses any other value; errors
keep their own `application/problem+json`, also without a parameter. Each service runs its real
app here, on the real Postgres, RabbitMQ, S3 and Docker engine.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from sage_builder.app import create_app as create_builder
from sage_common.bus import queue_names
from sage_common.work import RETRY_DELAYS as PROFILER_RETRY_DELAYS
from sage_ecr.config import Config as EcrConfig
from sage_profiler.app import create_app as create_profiler
from sage_profiler.config import Config as ProfilerConfig
from tests.support.builder import config_for_tests, delete_queues
from tests.support.bus import delete_topology
from tests.support.ecr import app_spec, start_ecr
from tests.support.names import sfx
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
JSON, PROBLEM = "application/json", "application/problem+json"
COMMON = ("/healthz", "/readyz", "/openapi.json")


async def answer_types(
    http: aiohttp.ClientSession, base: str, calls: list[tuple[str, str, dict]]
) -> dict[str, tuple[int, str]]:
    """`METHOD path` -> (status, the whole Content-Type header) of each call."""
    seen = {}
    for method, path, kw in calls:
        async with http.request(method, base + path, **kw) as resp:
            await resp.read()
            seen[f"{method} {path}"] = (resp.status, resp.headers.get("Content-Type", ""))
    return seen


def assert_json_types(seen: dict[str, tuple[int, str]]) -> None:
    for call, (status, content_type) in seen.items():
        expected = JSON if status < 400 else PROBLEM
        if call.endswith("/readyz") and status == 503:
            expected = JSON  # readiness reports its failed checks as plain JSON
        assert content_type == expected, (call, status, content_type)


async def test_auth_answers_json_without_a_charset(http, auth_url, make_user, service_secrets):
    token = await make_user(f"ct-{sfx()}")
    me = {"headers": {"Authorization": f"sage {token}"}}
    service = {"Authorization": aiohttp.encode_basic_auth("storage", service_secrets["storage"])}
    seen = await answer_types(
        http,
        auth_url,
        [
            *(("GET", path, {}) for path in COMMON),
            ("GET", "/auth/whoami", me),
            ("GET", "/auth/tokens", me),
            ("GET", "/auth/jwks.json", {}),
            ("POST", "/auth/token_info", {"headers": service, "data": {"token": token}}),
            ("POST", "/auth/token_info", {"headers": service, "data": {"token": "nope"}}),
            ("GET", "/auth/whoami", {"headers": {"Authorization": "sage nope"}}),
            ("GET", "/auth/users", me),
            ("GET", "/auth/nowhere", {}),
        ],
    )
    assert seen["GET /auth/whoami"][0] == 401 and seen["GET /auth/users"][0] == 403
    assert_json_types(seen)


async def test_ecr_api_answers_json_without_a_charset(http, database_url, auth_settings, make_user):
    config = EcrConfig(
        database_url=database_url,
        db_schema=f"ecr_ct_{sfx()}",
        use_bus=False,
        **auth_settings("ecr-api"),
    )
    ecr = await start_ecr(config)
    try:
        token = await make_user(f"ct-{sfx()}")
        me = {"headers": {"Authorization": f"sage {token}"}}
        ns = f"ct{sfx()}"
        app = f"{ns}/tool/1.0.0"
        seen = await answer_types(
            http,
            ecr.url,
            [
                *(("GET", path, {}) for path in COMMON),
                ("POST", "/api/submit", {**me, "json": app_spec(ns, "tool")}),
                ("POST", "/api/submit", {**me, "json": app_spec(ns, "tool")}),  # 409
                ("GET", "/api/apps", me),
                ("GET", "/api/apps/", me),  # from the listing cache now
                ("GET", f"/api/apps/{app}", me),
                ("GET", f"/api/apps/{app}/status", me),
                ("GET", f"/api/apps/{app}/logs", me),
                ("GET", f"/api/builds/{app}", me),
                ("GET", "/api/namespaces", me),
                ("GET", "/api/repositories?view=permissions", me),
                ("GET", f"/api/repositories/{ns}/tool", me),
                ("GET", f"/api/permissions/{ns}/tool", me),
                ("GET", "/api/schema/app.json", {}),
                ("GET", "/api/healthy", {}),
                ("GET", "/api/apps/nobody/nothing/1.0", {}),
                ("GET", "/api/apps?limit=0", {}),
            ],
        )
        assert seen["POST /api/submit"][0] == 409 and seen["GET /api/apps?limit=0"][0] == 422
        assert_json_types(seen)
    finally:
        await ecr.stop()


async def test_storage_answers_json_without_a_charset(http, storage_url, make_user):
    token = await make_user(f"ct-{sfx()}")
    me = {"headers": {"Authorization": f"sage {token}"}}
    async with http.post(
        f"{storage_url}/api/v1/objects",
        json={"name": f"ct{sfx()}", "type": "training-data"},
        **me,
    ) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == JSON
        bucket = (await resp.json())["id"]
    upload = aiohttp.FormData()
    upload.add_field("file", b"hello", filename="a.txt")
    seen = await answer_types(
        http,
        storage_url,
        [
            *(("GET", path, {}) for path in COMMON),
            ("GET", "/api/v1/objects", me),
            ("GET", f"/api/v1/objects/{bucket}", me),
            ("GET", f"/api/v1/objects/{bucket}?permissions", me),
            ("GET", f"/api/v1/objects/{bucket}/", me),
            ("PUT", f"/api/v1/objects/{bucket}/", {**me, "data": upload}),
            ("GET", f"/api/v1/objects/{bucket}/missing.txt", me),
        ],
    )
    assert seen[f"PUT /api/v1/objects/{bucket}/"][0] == 200
    assert seen[f"GET /api/v1/objects/{bucket}/missing.txt"][0] == 404
    assert_json_types(seen)


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def test_builder_and_profiler_answer_json_without_a_charset(
    http, tmp_path, database_url, amqp_url, auth_settings, s3_server, storage_url, service_secrets
):
    s = sfx()
    exchange = f"test.ct.{s}"
    s3 = {
        "s3_endpoint": s3_server.endpoint,
        "s3_access_key": s3_server.access_key,
        "s3_secret_key": s3_server.secret_key,
    }
    builder = config_for_tests(
        port=free_port(),
        database_url=database_url,
        db_schema=f"builder_ct_{s}",
        amqp_url=amqp_url,
        exchange=exchange,
        queue=f"test.ct.{s}.builder",
        cancel_queue=f"test.ct.{s}.builder-cancel",
        work_dir=tmp_path,
        registry="127.0.0.1:5000",
        s3_bucket=f"ct-logs-{s}",
        **auth_settings("builder"),
        **s3,
    )
    profiler = ProfilerConfig(
        database_url=database_url,
        db_schema=f"profiler_ct_{s}",
        amqp_url=amqp_url,
        exchange=exchange,
        queue=f"test.ct.{s}.profiler",
        cancel_queue=f"test.ct.{s}.profiler-cancel",
        storage_url=storage_url,
        storage_token=service_secrets["profiler"],
        **auth_settings("profiler"),
    )
    try:
        for app in (create_builder(builder), create_profiler(profiler)):
            async with serving(app) as base:
                seen = await answer_types(
                    http, base, [*(("GET", p, {}) for p in COMMON), ("GET", "/nowhere", {})]
                )
            assert_json_types(seen)
    finally:
        await delete_queues(amqp_url, builder)
        await delete_topology(
            amqp_url,
            exchanges=[exchange],
            queues=[
                *queue_names(profiler.queue, PROFILER_RETRY_DELAYS),
                *queue_names(profiler.cancel_queue),
            ],
        )


def test_no_service_answers_json_with_aiohttp_s_charset_adding_helpers():
    """`web.json_response` and `text=` with a JSON type add `; charset=utf-8`: the services use
    `sage_common.web.json_response` / `json_text_response` instead."""
    offenders = []
    for path in [
        *ROOT.glob("services/*/sage_*/**/*.py"),
        *ROOT.glob("libs/common/sage_common/**/*.py"),
    ]:
        text = path.read_text()
        for pattern in (r"web\.json_response\(", r"content_type=\"application/(problem\+)?json\""):
            if re.search(pattern, text) and path.name != "web.py":
                offenders.append(f"{path.relative_to(ROOT)}: {pattern}")
    assert offenders == []
