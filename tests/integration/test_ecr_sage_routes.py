"""SAGE's ECR routes and forms beside ours: trailing slashes, `/api/` and `/api/healthy`, freezing
by admins, the `public`/`nopublic`/`shared`/`owner` filters, `view=permissions`, and the app
document as SAGE shows it (also for versions stored before it had that shape)."""

from __future__ import annotations

import aiohttp
import pytest

from sage_common.web import POOL
from sage_ecr.config import Config
from sage_ecr.routes import routes
from tests.fixtures.auth import call
from tests.support.ecr import app_spec, start_ecr
from tests.support.names import sfx

PUBLIC = {"operation": "add", "granteeType": "GROUP", "grantee": "AllUsers", "permission": "READ"}


def ecr_config(database_url: str, auth_settings, schema: str) -> Config:
    return Config(
        database_url=database_url, db_schema=schema, use_bus=False, **auth_settings("ecr-api")
    )


@pytest.fixture(scope="module")
async def ecr(database_url, auth_settings):
    running = await start_ecr(ecr_config(database_url, auth_settings, f"ecr_sage_{sfx()}"))
    yield running
    await running.stop()


async def submit(http, ecr, token: str, ns: str, name: str, **fields) -> dict:
    status, app = await call(
        http, "POST", f"{ecr.url}/api/submit/", token=token, json=app_spec(ns, name, **fields)
    )
    assert status == 200, app
    return app


async def grant(http, ecr, token: str, repo: str, change: dict) -> None:
    status, body = await call(
        http, "PUT", f"{ecr.url}/api/permissions/{repo}/", token=token, json=change
    )
    assert status == 200, body


async def test_every_route_also_answers_with_a_trailing_slash(http, ecr, people):
    ns = f"lab{sfx()}"
    app = await submit(http, ecr, people["owner"], ns, "tool")
    path = f"{ns}/tool/1.0.0"
    for get in (
        "/api/apps",
        f"/api/apps/{ns}",
        f"/api/apps/{ns}/tool",
        f"/api/apps/{path}",
        f"/api/apps/{path}/status",
        f"/api/builds/{path}",
        "/api/namespaces",
        f"/api/namespaces/{ns}",
        "/api/repositories",
        f"/api/repositories/{ns}",
        f"/api/repositories/{ns}/tool",
        f"/api/permissions/{ns}",
        f"/api/permissions/{ns}/tool",
        "/api/healthy",
    ):
        plain = await call(http, "GET", ecr.url + get, token=people["owner"])
        slashed = await call(http, "GET", ecr.url + get + "/", token=people["owner"])
        assert plain[0] == 200 and slashed == plain, get
    status, body = await call(
        http, "PUT", f"{ecr.url}/api/namespaces/", token=people["owner"], json={"id": ns + "x"}
    )
    assert (status, body["id"]) == (200, ns + "x")
    assert await call(http, "POST", f"{ecr.url}/api/builds/{path}/", token=people["owner"]) == (
        200,
        {"build_number": 2},
    )
    assert await call(http, "DELETE", f"{ecr.url}/api/apps/{path}/", token=people["owner"]) == (
        200,
        {"deleted": 1},
    )
    assert app["id"] == f"{ns}/tool:1.0.0"
    # every route of the table has its slashed twin, and the OpenAPI document lists each once
    table = {(r.method, r.path) for r in routes}
    assert {(m, p + "/") for m, p in table if not p.endswith("/")} <= table
    status, doc = await call(http, "GET", f"{ecr.url}/openapi.json")
    assert status == 200 and "/api/apps" in doc["paths"] and "/api/apps/" not in doc["paths"]
    operations = [op["operationId"] for p in doc["paths"].values() for op in p.values()]
    assert len(operations) == len(set(operations))


async def test_the_root_and_healthy_answer_as_sage_s(http, ecr):
    async with http.get(f"{ecr.url}/api/") as resp:
        assert resp.status == 200 and await resp.text() == "SAGE Edge Code Repository"
    async with http.get(f"{ecr.url}/api/healthy") as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"
        assert await resp.json() == {"status": "ok"}


async def test_only_administrators_freeze_and_unfreeze(http, ecr, people):
    ns = f"lab{sfx()}"
    await submit(http, ecr, people["owner"], ns, "tool")
    url = f"{ecr.url}/api/apps/{ns}/tool/1.0.0"
    assert (await call(http, "PUT", url + "?frozen=true", token=people["owner"]))[0] == 403
    assert (await call(http, "PUT", url + "?frozen=true"))[0] == 404  # private: not even seen
    assert (await call(http, "PUT", url + "?frozen=maybe", token=people["admin"]))[0] == 422
    assert (await call(http, "PUT", url, token=people["admin"]))[0] == 422
    assert await call(http, "PUT", url + "?frozen=true", token=people["admin"]) == (
        200,
        {"modified": 1},
    )
    assert await call(http, "PUT", url + "?frozen=1", token=people["admin"]) == (
        200,
        {"modified": 0},
    )
    _, app = await call(http, "GET", url, token=people["owner"])
    assert app["frozen"] is True
    assert (await call(http, "DELETE", url, token=people["owner"]))[0] == 403
    rebuild = f"{ecr.url}/api/builds/{ns}/tool/1.0.0"
    assert (await call(http, "POST", rebuild, token=people["owner"]))[0] == 409
    assert await call(http, "PUT", url + "?frozen=false", token=people["admin"]) == (
        200,
        {"modified": 1},
    )
    assert (await call(http, "POST", rebuild, token=people["owner"]))[0] == 200


@pytest.fixture(scope="module")
async def four_repositories(ecr, people):
    """The owner's private `mine` and public `open`; the other's `lent` (READ to the owner) and
    public `theirs`; each in its own namespace, with one version."""
    s = sfx()
    repos = {
        "mine": f"a{s}/mine",
        "open": f"a{s}/open",
        "lent": f"b{s}/lent",
        "theirs": f"b{s}/theirs",
    }
    async with aiohttp.ClientSession() as http:
        for key, repo in repos.items():
            ns, name = repo.split("/")
            who = people["owner"] if key in ("mine", "open") else people["other"]
            await submit(http, ecr, who, ns, name)
        await grant(http, ecr, people["owner"], repos["open"], PUBLIC)
        await grant(http, ecr, people["other"], repos["theirs"], PUBLIC)
        lend = {**PUBLIC, "granteeType": "USER", "grantee": people["owner_name"]}
        await grant(http, ecr, people["other"], repos["lent"], lend)
    return repos


@pytest.mark.parametrize(
    ("who", "query", "expected"),
    [
        ("owner", "", {"mine", "open", "lent", "theirs"}),
        ("owner", "public=true", {"open", "theirs"}),
        ("owner", "nopublic=true", {"mine", "open", "lent"}),
        ("owner", "shared=true", {"lent"}),
        ("owner", "owner=true", {"mine", "open"}),
        ("anonymous", "", {"open", "theirs"}),
        ("anonymous", "nopublic=true", set()),
        ("admin", "nopublic=true", {"mine", "open", "lent", "theirs"}),
        ("admin", "public=true", {"open", "theirs"}),
    ],
)
async def test_sage_filters_list_the_same_repositories_and_apps(
    http, ecr, people, four_repositories, who, query, expected
):
    token = None if who == "anonymous" else people[who]
    names = {repo: key for key, repo in four_repositories.items()}
    _, repos = await call(http, "GET", f"{ecr.url}/api/repositories?{query}", token=token)
    _, apps = await call(http, "GET", f"{ecr.url}/api/apps?{query}", token=token)
    listed = {
        names[f"{r['namespace']}/{r['name']}"]
        for r in repos["data"]
        if f"{r['namespace']}/{r['name']}" in names
    }
    assert listed == expected
    listed = {names[a["id"].split(":")[0]] for a in apps["data"] if a["id"].split(":")[0] in names}
    assert listed == expected


async def test_view_permissions_shows_each_repository_s_grants_to_those_who_may_read_them(
    http, ecr, people, four_repositories
):
    def by_repo(data: list[dict]) -> dict[str, list[tuple[str, str, str]]]:
        names = {repo: key for key, repo in four_repositories.items()}
        return {
            names[f"{r['namespace']}/{r['name']}"]: sorted(
                (p["granteeType"], p["grantee"], p["permission"]) for p in r["permissions"]
            )
            for r in data
            if f"{r['namespace']}/{r['name']}" in names
        }

    url = f"{ecr.url}/api/repositories?view=permissions"
    _, repos = await call(http, "GET", url, token=people["owner"])
    owner, other = people["owner_name"], people["other_name"]
    assert by_repo(repos["data"]) == {
        "mine": [("USER", owner, "FULL_CONTROL")],
        "open": [("GROUP", "AllUsers", "READ"), ("USER", owner, "FULL_CONTROL")],
        "lent": [],  # READ only: the owner may not read that repository's grants
        "theirs": [("GROUP", "AllUsers", "READ")],  # public knowledge
    }
    for item in repos["data"]:
        for p in item["permissions"]:
            assert p["resourceType"] == "repository"
            assert p["resourceName"] == f"{item['namespace']}/{item['name']}"
    _, repos = await call(http, "GET", url, token=people["admin"])
    assert by_repo(repos["data"])["lent"] == [
        ("USER", other, "FULL_CONTROL"),
        ("USER", owner, "READ"),
    ]
    _, plain = await call(http, "GET", f"{ecr.url}/api/repositories", token=people["owner"])
    assert all("permissions" not in r for r in plain["data"])


async def test_the_app_document_has_sage_s_text_fields_and_our_lists_beside(http, ecr, people):
    ns = f"lab{sfx()}"
    app = await submit(
        http,
        ecr,
        people["owner"],
        ns,
        "tool",
        keywords="clouds, sky ,segmentation",
        authors=["Ada Lovelace <ada@example.org>", "Grace Hopper"],
        homepage="https://example.org/tool",
    )
    assert app["keywords"] == "clouds, sky, segmentation"
    assert app["keyword_list"] == ["clouds", "sky", "segmentation"]
    assert app["authors"] == "Ada Lovelace <ada@example.org>, Grace Hopper"
    assert app["author_list"] == ["Ada Lovelace <ada@example.org>", "Grace Hopper"]
    assert (app["collaborators"], app["collaborator_list"]) == ("", [])
    assert (app["homepage"], app["funding"], app["license"]) == ("https://example.org/tool", "", "")
    assert (app["depends_on"], app["baseCommand"], app["arguments"]) == ("", "", "")
    assert app["source"]["branch"] == "main" and app["source"]["tag"] == ""
    assert app["source"]["git_commit"] == "" and app["source"]["commit"] is None
    pinned = "abcdef0123456789abcdef0123456789abcdef01"
    source = {"url": "https://g.example/t.git", "tag": "v1", "commit": pinned}
    app = await submit(http, ecr, people["owner"], ns, "pinned", source=source)
    assert app["source"]["branch"] == "" and app["source"]["git_commit"] == pinned


async def test_documents_stored_in_an_older_shape_are_recomputed_at_start(
    http, database_url, auth_settings, people
):
    config = ecr_config(database_url, auth_settings, f"ecr_docs_{sfx()}")
    first = await start_ecr(config)
    try:
        ns = f"lab{sfx()}"
        await submit(http, first, people["owner"], ns, "old", keywords=["a", "b"])
        async with first.app[POOL].acquire() as conn:
            # what the service stored before keywords were SAGE's text
            await conn.execute(
                """UPDATE apps SET doc_version = 1,
                       doc = json_build_object('id', $1::text, 'keywords', json_build_array('a', 'b'))
                   WHERE namespace = $2""",
                f"{ns}/old:1.0.0",
                ns,
            )
    finally:
        await first.stop()
    second = await start_ecr(config)
    try:
        status, app = await call(
            http, "GET", f"{second.url}/api/apps/{ns}/old/1.0.0", token=people["owner"]
        )
        assert status == 200 and app["keywords"] == "a, b" and app["keyword_list"] == ["a", "b"]
        async with second.app[POOL].acquire() as conn:
            stored = await conn.fetchval("SELECT doc FROM apps WHERE namespace = $1", ns)
        assert stored["source"]["git_commit"] == ""
    finally:
        await second.stop()
