"""The SAGE portal (sagecontinuum/sage-gui) against the ECR API, call for call.

`Portal` below mirrors `components/apis/ecr.ts`: the same paths and query strings (its stray `&`s
included), `Authorization: sage <token>`, bodies sent as `fetch` sends a string (text/plain), the
preflight a browser makes first (the portal is on another origin and sends `Authorization`), and
what the page then reads: `keywords.split(',')` and `authors.split(',')` (`app/AppMeta.tsx`),
"public" from each repository's `permissions[]` (`listApps`), a build's `url + "console"` opened in
a new tab (`hooks/useWithBuildStatus.tsx`), `errorObj.error` of failures (`fetch-utils.ts`). The
ECR runs with the development stack's CORS setting, behind a gateway that routes as nginx does.
"""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sage_common.bus import Bus, queue_names
from sage_common.cors import OriginPolicy
from sage_common.events import make_event
from sage_common.schemas import ArchImage, BuildDone, BuildStarted
from sage_ecr.config import Config
from tests.fixtures.gateway import Gateway
from tests.support.bus import delete_topology, eventually
from tests.support.ecr import app_spec, start_ecr
from tests.support.names import sfx

ROOT = Path(__file__).resolve().parents[2]
PORTAL = "http://localhost:3000"  # sage-gui's development server
ACAO = "Access-Control-Allow-Origin"


def stack_env() -> Any:
    """scripts/stack_env.py: the development stack's settings (`make up`)."""
    spec = importlib.util.spec_from_file_location("stack_env", ROOT / "scripts" / "stack_env.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class PortalError(Exception):
    """What `handleErrors` throws: `Error(errorObj.error)`."""


class Portal:
    """`components/apis/ecr.ts`, as a browser on the portal's origin runs it."""

    def __init__(self, http: aiohttp.ClientSession, gateway: str, token: str | None = None):
        self.http, self.url, self.token = http, f"{gateway}/api", token

    async def _preflight(self, method: str, url: str) -> None:
        """What the browser asks before a request that is not "simple" (one with Authorization)."""
        headers = {"Origin": PORTAL, "Access-Control-Request-Method": method}
        if self.token:
            headers["Access-Control-Request-Headers"] = "authorization"
        async with self.http.options(url, headers=headers) as resp:
            assert resp.status in (200, 204), (url, resp.status)
            assert resp.headers.getall(ACAO) == [PORTAL], url
            allowed = resp.headers.get("Access-Control-Allow-Headers", "").lower()
            assert not self.token or "authorization" in allowed
            assert method in resp.headers["Access-Control-Allow-Methods"]

    async def fetch(self, method: str, endpoint: str, body: str | None = None) -> Any:
        """`fetch(endpoint, {method, body, ...options}).then(handleErrors).then(r => r.json())`."""
        if self.token or method not in ("GET", "HEAD", "POST"):
            await self._preflight(method, endpoint)
        headers = {"Origin": PORTAL}
        if self.token:
            headers["Authorization"] = f"sage {self.token}"
        if body is not None:
            headers["Content-Type"] = "text/plain;charset=UTF-8"  # what fetch sends with a string
        async with self.http.request(method, endpoint, data=body, headers=headers) as resp:
            assert resp.headers.getall(ACAO) == [PORTAL], endpoint  # else: "Failed to fetch"
            data = json.loads(await resp.text())
            if not resp.ok:
                raise PortalError(data["error"])
            return data

    # ---- the functions of ecr.ts, one for one

    async def register(self, app_config: str) -> Any:
        return await self.fetch("POST", f"{self.url}/submit", app_config)

    async def build(self, app: dict[str, Any]) -> Any:
        return await self.fetch(
            "POST", f"{self.url}/builds/{app['namespace']}/{app['name']}/{app['version']}"
        )

    async def delete_app(self, app: dict[str, Any]) -> Any:
        path = f"{app['namespace']}/{app['name']}/{app['version']}"
        return await self.fetch("DELETE", f"{self.url}/apps/{path}")

    async def delete_repo(self, repo: dict[str, Any]) -> Any:
        for version in await self.list_versions(repo):
            await self.delete_app({**repo, "version": version["version"]})
        return await self.fetch(
            "DELETE", f"{self.url}/repositories/{repo['namespace']}/{repo['name']}"
        )

    async def make_public(self, repo: dict[str, Any], operation: str = "add") -> Any:
        change = {
            "operation": operation,
            "granteeType": "GROUP",
            "grantee": "AllUsers",
            "permission": "READ",
        }
        path = f"{self.url}/permissions/{repo['namespace']}/{repo['name']}"
        return await self.fetch("PUT", path, json.dumps(change))

    async def share(self, repo: dict[str, Any], grantee: str, permission: str) -> Any:
        change = {
            "operation": "add",
            "granteeType": "USER",
            "grantee": grantee,
            "permission": permission,
        }
        path = f"{self.url}/permissions/{repo['namespace']}/{repo['name']}"
        return await self.fetch("PUT", path, json.dumps(change))

    async def list_permissions(self, repo: dict[str, Any]) -> Any:
        return await self.fetch("GET", f"{self.url}/permissions/{repo['namespace']}/{repo['name']}")

    async def list_namespaces(self) -> Any:
        return (await self.fetch("GET", f"{self.url}/apps"))["data"]

    async def list_versions(self, repo: dict[str, Any]) -> list[dict[str, Any]]:
        data = await self.fetch("GET", f"{self.url}/apps/{repo['namespace']}/{repo['name']}")
        return sorted(data["data"], key=lambda a: a["time_last_updated"], reverse=True)

    async def list_apps(self, filter: str) -> list[dict[str, Any]]:
        """`listApps('mine' | 'public')`, merging as the portal merges."""
        repo_filters = [
            "view=permissions" if self.token else "",
            "nopublic=true" if filter == "mine" else "",
        ]
        app_filters = [
            "public=true" if filter == "public" else "",
            "nopublic=true" if filter == "mine" else "",
        ]
        repos = (await self.fetch("GET", f"{self.url}/repositories?{'&'.join(repo_filters)}"))[
            "data"
        ]
        apps = (await self.fetch("GET", f"{self.url}/apps?{'&'.join(app_filters)}"))["data"]
        repo_map = {f"{r['namespace']}/{r['name']}": r for r in repos}
        versions: dict[str, list[str]] = {}
        latest = []
        for app in sorted(apps, key=lambda a: a["time_last_updated"], reverse=True):
            repo, version = app["id"].split(":")
            if repo not in versions:
                latest.append(app)
            versions.setdefault(repo, []).append(version)
        shown = []
        for app in latest:
            repo = app["id"].split(":")[0]
            if repo not in repo_map:
                continue
            permissions = repo_map[repo].get("permissions", [])
            is_public = any(
                p["resourceType"] != "namespace" and p["grantee"] == "AllUsers" for p in permissions
            )
            shown.append({**app, "versions": versions[repo], "isPublic": is_public})
        return shown

    async def get_build_status(self, app: dict[str, Any]) -> Any:
        path = f"{app['namespace']}/{app['name']}/{app['version']}"
        return await self.fetch("GET", f"{self.url}/builds/{path}")

    async def get_repo(self, repo: dict[str, Any]) -> Any:
        data = await self.fetch(
            "GET", f"{self.url}/repositories/{repo['namespace']}/{repo['name']}"
        )
        data["versions"].sort(key=lambda a: a["time_last_updated"], reverse=True)
        return data

    async def get_app_config(self, app: dict[str, Any]) -> Any:
        path = f"{app['namespace']}/{app['name']}/{app['version']}"
        return await self.fetch("GET", f"{self.url}/apps/{path}?view=app")

    async def get_app_details(self, app: dict[str, Any]) -> Any:
        path = f"{app['namespace']}/{app['name']}/{app['version']}"
        return await self.fetch("GET", f"{self.url}/apps/{path}")


def app_meta_page(data: dict[str, Any]) -> dict[str, Any]:
    """What `app/AppMeta.tsx` renders from an app: it calls string methods on these fields."""
    return {
        "image": bool(data.get("images")),
        "repository": data["source"]["url"][:40],
        "homepage": data["homepage"] or None,
        "authors": [a.split("<")[0] for a in data["authors"].split(",")] if data["authors"] else [],
        "keywords": data["keywords"].split(",") if data["keywords"] else [],
        "license": data["license"],
    }


@pytest.fixture(scope="module")
async def stack(database_url, amqp_url, auth_settings, s3_server):
    """The ECR API with the dev stack's CORS setting, its build logs in S3, behind a gateway."""
    s = sfx()
    bucket = f"portal-logs-{s}"
    s3_server.client().make_bucket(bucket)
    config = Config(
        database_url=database_url,
        db_schema=f"ecr_portal_{s}",
        amqp_url=amqp_url,
        exchange=f"test.portal.{s}",
        consumer_queue=f"test.portal.{s}.ecr",
        outbox_poll_seconds=0.2,
        cors_origins=json.loads(stack_env().build({})["SAGE_ECR_CORS_ORIGINS"]),
        s3_endpoint=s3_server.endpoint,
        s3_access_key=s3_server.access_key,
        s3_secret_key=s3_server.secret_key,
        build_log_bucket=bucket,
        **auth_settings("ecr-api"),
    )
    ecr = await start_ecr(config)
    gateway = Gateway([("/api/", ecr.url)])
    await gateway.start()
    builder = Bus(amqp_url, exchange=config.exchange, service="test-builder")
    await builder.connect()
    yield {"gateway": gateway.url, "builder": builder, "bucket": bucket, "s3": s3_server}
    await builder.close()
    await gateway.stop()
    await ecr.stop()
    await delete_topology(
        amqp_url, exchanges=[config.exchange], queues=queue_names(config.consumer_queue)
    )


def sage_style_config(ns: str, name: str) -> str:
    """An app as the portal's create-app form posts it: JSON text, keywords as one string."""
    spec = app_spec(
        ns,
        name,
        keywords="clouds, sky, segmentation",
        authors="Ada Lovelace <ada@example.org>, Grace Hopper <grace@example.org>",
    )
    return json.dumps(spec)


async def test_my_apps_and_the_app_explorer_show_what_the_owner_published(stack, http, people):
    owner = Portal(http, stack["gateway"], people["owner"])
    other = Portal(http, stack["gateway"], people["other"])
    anyone = Portal(http, stack["gateway"])
    ns = f"lab{sfx()}"
    app = await owner.register(sage_style_config(ns, "cloud-cover"))
    assert (app["namespace"], app["name"], app["version"]) == (ns, "cloud-cover", "1.0.0")
    assert await owner.build(app) == {"build_number": 2}
    repo = {"namespace": ns, "name": "cloud-cover"}

    mine = {a["id"]: a for a in await owner.list_apps("mine")}
    assert mine[app["id"]]["isPublic"] is False and mine[app["id"]]["versions"] == ["1.0.0"]
    assert app["id"] not in {a["id"] for a in await anyone.list_apps("public")}

    assert await owner.make_public(repo) == {"added": 1}
    mine = {a["id"]: a for a in await owner.list_apps("mine")}
    assert mine[app["id"]]["isPublic"] is True
    public = {a["id"]: a for a in await anyone.list_apps("public")}
    assert public[app["id"]]["isPublic"] is False  # anonymous: no view=permissions, as ecr.ts
    public = {a["id"]: a for a in await other.list_apps("public")}
    assert public[app["id"]]["isPublic"] is True
    assert app["id"] not in {a["id"] for a in await other.list_apps("mine")}

    assert await owner.share(repo, people["other_name"], "READ") == {"added": 1}
    grants = await owner.list_permissions(repo)
    assert {
        "grantee": people["other_name"],
        "granteeType": "USER",
        "permission": "READ",
        "resourceName": f"{ns}/cloud-cover",
        "resourceType": "repository",
    } in grants
    assert app["id"] in {a["id"] for a in await other.list_apps("mine")}


async def test_an_app_page_renders_keywords_authors_and_the_repository(stack, http, people):
    owner = Portal(http, stack["gateway"], people["owner"])
    ns = f"lab{sfx()}"
    app = await owner.register(sage_style_config(ns, "cloud-cover"))
    repo = await owner.get_repo({"namespace": ns, "name": "cloud-cover"})
    latest = repo["versions"][0]
    assert latest["id"] == app["id"] and not latest.get("science_description")
    for data in (await owner.get_app_details(app), await owner.get_app_config(app)):
        assert app_meta_page(data) == {
            "image": False,
            "repository": f"https://git.example.org/{ns}/cloud-cover.git"[:40],
            "homepage": None,
            "authors": ["Ada Lovelace ", " Grace Hopper "],
            "keywords": ["clouds", " sky", " segmentation"],
            "license": "",
        }
        assert data["collaborators"] == "" and data["funding"] == ""
        assert data["source"]["architectures"] == ["linux/amd64", "linux/arm64"]
    versions = await owner.list_versions({"namespace": ns, "name": "cloud-cover"})
    assert [v["version"] for v in versions] == ["1.0.0"]
    assert app["id"] in {a["id"] for a in await owner.list_namespaces()}


async def test_a_build_links_its_log_as_jenkins_did(stack, http, people):
    owner = Portal(http, stack["gateway"], people["owner"])
    ns = f"lab{sfx()}"
    app = await owner.register(sage_style_config(ns, "cloud-cover"))
    await owner.make_public({"namespace": ns, "name": "cloud-cover"})
    status = await owner.get_build_status(app)
    assert status["result"] is None and status["building"] is True
    assert status["url"] == (
        f"{stack['gateway']}/api/builds/{ns}/cloud-cover/1.0.0/{status['build_number']}/"
    )
    # the builder writes its log to S3 and reports the build with the commit it checked out
    key = f"builds/{ns}/cloud-cover/1.0.0/{status['build_id']}.log"
    text = b"Step 1/2 : FROM scratch\nSuccessfully built\n"
    commit = "0123456789abcdef0123456789abcdef01234567"
    location = f"s3://{stack['bucket']}/{key}"
    stack["s3"].client().put_object(stack["bucket"], key, io.BytesIO(text), len(text))
    for data in (
        BuildStarted(
            app_id=app["id"],
            build_id=status["build_id"],
            started_at="2030-01-01T00:00:00Z",
            log_location=location,
        ),
        BuildDone(
            app_id=app["id"],
            build_id=status["build_id"],
            status="success",
            commit=commit,
            image=f"127.0.0.1:5000/{ns}/cloud-cover:1.0.0",
            index_digest="sha256:" + "a" * 64,
            images=[ArchImage(architecture="linux/amd64", digest="sha256:" + "b" * 64)],
            log_location=location,
        ),
    ):
        await stack["builder"].publish(make_event("test-builder", data, subject=app["id"]))

    async def built() -> bool:
        return (await owner.get_build_status(app))["result"] == "SUCCESS"

    await eventually(built)
    status = await owner.get_build_status(app)
    assert status["building"] is False
    # BuildIndicator's link: a new tab, so no Origin and no token (the app is public)
    async with http.get(status["url"] + "console") as resp:
        assert resp.status == 200 and resp.content_type == "text/plain"
        assert await resp.read() == text
    details = await owner.get_app_details(app)
    assert details["source"]["git_commit"] == commit and details["source"]["tag"] == ""
    await owner.make_public({"namespace": ns, "name": "cloud-cover"}, "delete")
    async with http.get(status["url"] + "console") as resp:
        assert resp.status == 404  # private again: the tab has no token
    with pytest.raises(PortalError, match="no build 9"):
        await owner.fetch("GET", status["url"].replace("/1/", "/9/") + "console")


async def test_failures_reach_the_page_as_their_error_text(stack, http, people):
    owner = Portal(http, stack["gateway"], people["owner"])
    ns = f"lab{sfx()}"
    app = await owner.register(sage_style_config(ns, "cloud-cover"))
    with pytest.raises(PortalError, match="not empty"):
        await owner.fetch("DELETE", f"{owner.url}/repositories/{ns}/cloud-cover")
    with pytest.raises(PortalError, match="already exists"):
        await owner.register(sage_style_config(ns, "cloud-cover"))
    assert await owner.delete_repo({"namespace": ns, "name": "cloud-cover"}) == {"deleted": 1}
    with pytest.raises(PortalError, match="no app"):
        await owner.get_app_details(app)


async def test_the_dev_stack_answers_a_preflight_from_a_portal_anywhere(stack, http, people):
    """A portal served from a name mapped to loopback, asking before reading an app."""
    owner = Portal(http, stack["gateway"], people["owner"])
    app = await owner.register(sage_style_config(f"lab{sfx()}", "cloud-cover"))
    headers = {
        "Origin": "http://portal.example.org",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }
    url = f"{owner.url}/apps/{app['id'].replace(':', '/')}"
    async with http.options(url, headers=headers) as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == "http://portal.example.org"
        assert "authorization" in resp.headers["Access-Control-Allow-Headers"].lower()


def test_the_dev_stack_lets_a_portal_on_any_origin_call_the_apis():
    """`make up` (scripts/stack_env.py): the portal on localhost or on a name mapped to it."""
    dev = stack_env()
    env = dev.build({})
    for prefix in dev.BROWSER_FACING:
        policy = OriginPolicy(json.loads(env[prefix + "CORS_ORIGINS"]))
        for origin in (
            "http://localhost:3000",
            "http://127.0.0.1:1234",
            "http://portal.example.org",
        ):
            assert policy.allows(origin), (prefix, origin)
    assert Config().cors_origins == []  # production: off until configured
