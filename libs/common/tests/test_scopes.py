"""The route -> scope table and its check in the auth middleware, on a small service app.

Tokens come from a fixed introspector (the real auth service is exercised in
tests/integration/test_scope_matrix.py); what is under test is the table and the middleware.
"""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from sage_common.auth import Principal, principal
from sage_common.config import ServiceConfig
from sage_common.scopes import NO_SCOPE, RouteScopes, holds, missing_scopes, route_key
from sage_common.web import SCOPES, create_service_app, json_response


class FixedTokens:
    """An introspector that knows tokens named after their scopes: `token-<scope>[,<scope>]`."""

    def __init__(self, *, admin: bool = False) -> None:
        self.admin = admin

    async def introspect(self, token: str) -> Principal | None:
        if not token.startswith("token-"):
            return None
        scopes = [s for s in token.removeprefix("token-").split(",") if s]
        return Principal(username="alice", scopes=scopes, is_admin=self.admin, is_approved=True)


async def whoami(request: web.Request) -> web.Response:
    who = principal(request)
    return json_response(
        {"user": who.username if who else None, "admin": bool(who and who.is_admin)}
    )


ROUTES = [
    web.get("/things", whoami),
    web.get("/things/", whoami),  # a trailing-slash twin, as SAGE's routes have
    web.post("/things/{thing_id}", whoami),
    web.get("/files/{bucket}/{key:.*}", whoami),
    web.get("/open", whoami),
    web.get("/forgotten", whoami),  # in no table: refuses every token
]
TABLE = {
    ("GET", "/things"): "things:read",
    ("POST", "/things/{id}"): "things",  # parameter names need not match the route's
    ("GET", "/files/{bucket}/{key}"): "things:read",
    ("GET", "/open"): NO_SCOPE,
}


def things_app(*, admin: bool) -> web.Application:
    return create_service_app(
        "things",
        ServiceConfig(),
        routes=ROUTES,
        scopes=TABLE,
        admin_scope="things:admin",
        use_database=False,
        introspector=FixedTokens(admin=admin),
    )


@pytest.fixture
async def http():
    """The app, its every token a token of an administrator's."""
    async with TestClient(TestServer(things_app(admin=True), host="127.0.0.1")) as client:
        yield client


async def _get(http: TestClient, method: str, path: str, token: str | None) -> tuple[int, dict]:
    headers = {"Authorization": f"sage {token}"} if token else {}
    async with http.request(method, path, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


@pytest.mark.parametrize(
    ("scope", "wanted", "held"),
    [
        ("all", "things:admin", True),
        ("things:admin", "things", True),
        ("things:admin", "things:read", True),
        ("things", "things:read", True),
        ("things", "things:admin", False),
        ("things:read", "things", False),
        ("other", "things:read", False),
        ("things:read", "thingsx:read", False),
    ],
)
def test_scopes_nest_from_admin_to_use_to_read(scope: str, wanted: str, held: bool) -> None:
    assert holds([scope], wanted) is held


def test_route_keys_ignore_trailing_slashes_parameter_names_and_head() -> None:
    assert route_key("HEAD", "/a/{ns}/b/") == route_key("get", "/a/{namespace}/b")
    assert route_key("GET", "/") == ("GET", "/")


async def test_a_token_without_the_routes_scope_gets_403_naming_it(http: TestClient) -> None:
    status, body = await _get(http, "GET", "/things", "token-other")
    assert status == 403
    assert body["detail"] == "this token's scopes do not include things:read"
    assert body["error"] == body["detail"]


@pytest.mark.parametrize("token", ["token-things:read", "token-things", "token-all"])
async def test_a_token_holding_the_scope_reaches_the_handler(http: TestClient, token: str) -> None:
    assert (await _get(http, "GET", "/things", token))[0] == 200
    assert (await _get(http, "HEAD", "/things", token))[0] == 200


async def test_a_trailing_slash_twin_needs_the_same_scope(http: TestClient) -> None:
    assert (await _get(http, "GET", "/things/", "token-other"))[0] == 403
    assert (await _get(http, "GET", "/things/", "token-things:read"))[0] == 200


async def test_routes_match_whatever_their_parameters_are_called(http: TestClient) -> None:
    assert (await _get(http, "POST", "/things/7", "token-things:read"))[0] == 403
    assert (await _get(http, "POST", "/things/7", "token-things"))[0] == 200
    assert (await _get(http, "GET", "/files/b/deep/key.txt", "token-things:read"))[0] == 200


async def test_an_undeclared_route_refuses_every_token_but_not_anonymous(http: TestClient) -> None:
    status, body = await _get(http, "GET", "/forgotten", "token-all")
    assert status == 403 and "no token scope is declared" in body["detail"]
    assert (await _get(http, "GET", "/forgotten", None))[0] == 200


async def test_routes_without_a_scope_and_common_routes_take_any_token(http: TestClient) -> None:
    assert (await _get(http, "GET", "/open", "token-other"))[0] == 200
    assert (await _get(http, "GET", "/healthz", "token-other"))[0] == 200


async def test_anonymous_callers_are_not_refused_for_scopes(http: TestClient) -> None:
    assert await _get(http, "GET", "/things", None) == (200, {"user": None, "admin": False})


async def test_unknown_routes_stay_404_for_any_token(http: TestClient) -> None:
    assert (await _get(http, "GET", "/nowhere", "token-other"))[0] == 404


@pytest.mark.parametrize(
    ("token", "admin"),
    [("token-things", False), ("token-things:read", False), ("token-things:admin", True),
     ("token-all", True)],
)  # fmt: skip
async def test_admin_powers_need_the_admin_scope(http: TestClient, token: str, admin: bool) -> None:
    assert (await _get(http, "GET", "/open", token))[1]["admin"] is admin


async def test_the_admin_scope_makes_no_admin_of_a_user() -> None:
    async with TestClient(TestServer(things_app(admin=False), host="127.0.0.1")) as http:
        assert (await _get(http, "GET", "/open", "token-things:admin"))[1]["admin"] is False


def test_missing_scopes_lists_the_routes_the_table_forgot() -> None:
    app = things_app(admin=False)
    assert missing_scopes(app, app[SCOPES]) == [("GET", "/forgotten")]
    assert RouteScopes(TABLE).required("GET", "/things/") == "things:read"
