"""The async library on its own: one client, three sub-APIs, one exception type."""

from __future__ import annotations

import socket

import pytest

from clients.tests.standin import GOOD_TOKEN, Failure, StandIn
from sage_client import AppId, SageClient, SageConnectionError, SageError


async def test_sub_apis_share_one_authenticated_session(server: StandIn) -> None:
    async with SageClient(server.url + "/", GOOD_TOKEN) as sage:
        assert sage.host == server.url
        me = await sage.auth.whoami()
        bucket = await sage.storage.create_bucket("model", "weights")
        namespaces = await sage.ecr.namespaces()
    assert me["username"] == "alice" and bucket["owner"] == "alice" and namespaces == []
    assert {r["headers"]["Authorization"] for r in server.state.requests} == {f"sage {GOOD_TOKEN}"}


async def test_errors_carry_status_message_and_body(server: StandIn) -> None:
    server.state.fail(
        "GET", "/auth/tokens", Failure(503, '{"detail": "busy"}', headers={"Retry-After": "3"})
    )
    async with SageClient(server.url, GOOD_TOKEN) as sage:
        with pytest.raises(SageError) as caught:
            await sage.auth.list_tokens()
    assert (caught.value.status, caught.value.message, caught.value.retry_after) == (
        503,
        "busy",
        3.0,
    )
    assert caught.value.body == {"detail": "busy"}


async def test_no_answer_is_a_connection_error_with_status_0() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with SageClient(f"http://127.0.0.1:{port}", GOOD_TOKEN) as sage:
        with pytest.raises(SageConnectionError) as caught:
            await sage.auth.whoami()
    assert caught.value.status == 0 and caught.value.retryable


async def test_pages_are_iterated_until_not_truncated(server: StandIn) -> None:
    async with SageClient(server.url, GOOD_TOKEN) as sage:
        bid = (await sage.storage.create_bucket("model"))["id"]
        server.state.objects[bid].update({f"k{i}": b"" for i in range(5)})
        pages = [p async for p in sage.storage.iter_object_pages(bid, limit=2)]
    assert [len(p["Contents"]) for p in pages] == [2, 2, 1]


async def test_deleting_an_empty_key_is_refused_locally(server: StandIn) -> None:
    async with SageClient(server.url, GOOD_TOKEN) as sage:
        with pytest.raises(SageError, match="empty key"):
            await sage.storage.delete_object("b1", "/")
    assert server.state.requests == []


def test_app_ids_parse_and_print() -> None:
    app = AppId.parse("team/detector:1.0.0")
    assert (app.namespace, app.name, app.version, str(app)) == (
        "team",
        "detector",
        "1.0.0",
        "team/detector:1.0.0",
    )
    with pytest.raises(SageError):
        AppId.parse("team/detector")
