"""Bad inputs get clear 4xx problem+json answers: malformed headers, odd bodies, wrong types."""

from __future__ import annotations

import asyncio
import base64
import uuid

import aiohttp
import pytest

from tests.fixtures.auth import call


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


MALFORMED = {
    "scheme-only": "sage",
    "scheme-and-space": "sage ",
    "unknown-scheme": "Digest abc",
    "two-words": "sage one two",
    "too-long": "sage " + "x" * 4000,
    "basic-empty": "Basic",
    "basic-not-base64": "Basic !!!",
    "basic-no-colon": "Basic " + b64(b"justauser"),
    "basic-not-utf8": "Basic " + b64(b"\xff\xfe:\xff"),
    "basic-empty-password": "Basic " + b64(b"user:"),
    "latin1-token": "sage t\xf6ken",
}


@pytest.mark.parametrize("header", list(MALFORMED.values()), ids=list(MALFORMED))
@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/auth/whoami"), ("POST", "/auth/tokens"), ("GET", "/auth/users")]
)
async def test_malformed_authorization_is_401_never_500(http, auth_url, header, method, path):
    async with http.request(method, auth_url + path, headers={"Authorization": header}) as resp:
        assert resp.status == 401
        assert resp.content_type == "application/problem+json"
        body = await resp.json(content_type=None)
        assert body["status"] == 401 and body["error"]


@pytest.mark.parametrize(
    "raw",
    [b"sage \x01\x02", b"sage \xff\xfe", b"sage tok\ten", b"Basic " + b"A" * 3000],
    ids=["control-chars", "invalid-utf8", "tab", "long-basic"],
)
async def test_raw_header_bytes_are_401_never_500(auth_url, raw):
    host, port = auth_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"GET /auth/whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: "
        + raw
        + b"\r\n\r\n"
    )
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), timeout=10)
    writer.close()
    status = int(status_line.split()[1])
    assert status in (400, 401), status_line


async def test_oversized_json_body_is_413(http, auth_url, make_user):
    token = await make_user(f"big-{uuid.uuid4().hex[:8]}")
    body = {"name": "x" * (512 * 1024)}
    status, answer = await call(http, "POST", f"{auth_url}/auth/tokens", token=token, json=body)
    assert status == 413 and answer["status"] == 413


async def test_oversized_token_info_form_is_413(http, auth_url, service_secrets):
    headers = {"Authorization": aiohttp.encode_basic_auth("ecr-api", service_secrets["ecr-api"])}
    status, _ = await call(
        http,
        "POST",
        f"{auth_url}/auth/token_info",
        headers=headers,
        data={"token": "x" * (512 * 1024)},
    )
    assert status == 413


async def test_long_token_in_token_info_is_just_inactive(http, auth_url, service_secrets):
    headers = {"Authorization": aiohttp.encode_basic_auth("ecr-api", service_secrets["ecr-api"])}
    status, body = await call(
        http, "POST", f"{auth_url}/auth/token_info", headers=headers, data={"token": "x" * 4000}
    )
    assert (status, body) == (200, {"active": False})


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("text/plain", b'{"name": "x"}'),
        ("application/x-www-form-urlencoded", b"name=x"),
        ("multipart/form-data; boundary=x", b"--x--"),
        (None, b'{"name": "x"}'),
    ],
    ids=["text", "form", "multipart", "none"],
)
async def test_json_routes_refuse_other_content_types_with_415(
    http, auth_url, make_user, content_type, data
):
    token = await make_user(f"ctype-{uuid.uuid4().hex[:8]}", admin=True)
    headers = {"Content-Type": content_type} if content_type else {}
    for path in ("/auth/tokens", "/auth/users", "/auth/groups"):
        status, body = await call(
            http, "POST", auth_url + path, token=token, headers=headers, data=data
        )
        assert status == 415, path
        assert body["status"] == 415


async def test_invalid_json_is_400_and_wrong_shapes_are_422(http, auth_url, make_user):
    token = await make_user(f"shape-{uuid.uuid4().hex[:8]}")
    url = f"{auth_url}/auth/tokens"
    headers = {"Content-Type": "application/json"}
    assert (await call(http, "POST", url, token=token, headers=headers, data=b"{nope"))[0] == 400
    for body in (
        [],
        "x",
        {"name": ""},
        {"name": "x", "scopes": "all"},
        {"name": "x", "extra": 1},
        {"name": "x", "expires_in_days": 0},
        {"name": "x", "scopes": ["Not A Scope"]},
    ):
        status, answer = await call(http, "POST", url, token=token, json=body)
        assert status == 422, body
        assert answer["errors"]


async def test_unknown_route_and_wrong_method_are_problem_json(http, auth_url):
    status, body = await call(http, "GET", f"{auth_url}/auth/nothing-here")
    assert status == 404 and body["status"] == 404
    async with http.put(f"{auth_url}/auth/whoami") as resp:
        assert resp.status == 405
        assert "GET" in resp.headers["Allow"]
