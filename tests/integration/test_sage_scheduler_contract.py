"""The SAGE edge scheduler (waggle-sensor/edge-scheduler) against the ECR API, call for call.

It pulls: `pkg/cloudscheduler/validator.go` asks `GET {ECRURL}/api/apps` when it starts (an error
there stops it) and `GET {ECRURL}/api/apps/{ns}/{name}/{version}` for each plugin image a job
names (`registry/ns/name:version`), through `pkg/interfacing/http.go`'s `RequestGet`: headers
`Content-Type: application/json` and `Accept: application/json`, no token. `ParseJSONHTTPResponse`
refuses any status but 200 and any `Content-Type` but exactly `application/json`; the body is
decoded into `datatype.PluginManifest` (`pkg/datatype/manifest.go`), where a member of the wrong
JSON type fails the whole decode. `decode_plugin_manifest` below does what Go's decoder does.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from sage_ecr.config import Config
from tests.fixtures.auth import call
from tests.fixtures.gateway import Gateway
from tests.support.ecr import app_spec, start_ecr
from tests.support.names import sfx

HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}  # RequestGet's


class SchedulerError(Exception):
    """An error the scheduler logs and acts on (`LoadDatabase` stops, a job is refused)."""


def _member(obj: dict[str, Any], name: str) -> Any:
    """Go's encoding/json matches member names case-insensitively (an exact match first)."""
    if name in obj:
        return obj[name]
    return next((v for k, v in obj.items() if k.lower() == name.lower()), None)


def _go_string(value: Any, where: str) -> str:
    if value is None:
        return ""  # null leaves a Go string as it was
    if not isinstance(value, str):
        raise SchedulerError(f"json: cannot unmarshal {type(value).__name__} into {where} string")
    return value


def decode_plugin_manifest(obj: Any) -> dict[str, Any]:
    """`json.Decoder.Decode(&datatype.PluginManifest{})`: the fields the scheduler has, typed."""
    if not isinstance(obj, dict):
        raise SchedulerError("json: cannot unmarshal into PluginManifest")
    source = _member(obj, "source") or {}
    if not isinstance(source, dict):
        raise SchedulerError("json: cannot unmarshal into PluginManifestSource")
    architectures = _member(source, "architectures") or []
    if not isinstance(architectures, list) or not all(isinstance(a, str) for a in architectures):
        raise SchedulerError("json: cannot unmarshal into Source.architectures []string")
    for name in ("tags", "required_hardware"):
        value = _member(obj, name)
        if value is not None and not (
            isinstance(value, dict) and all(isinstance(v, bool) for v in value.values())
        ):
            raise SchedulerError(f"json: cannot unmarshal into {name} map[string]bool")
    profiles = _member(obj, "profiles")
    if profiles is not None and not isinstance(profiles, list):
        raise SchedulerError("json: cannot unmarshal into profiles []Profile")
    return {
        "name": _go_string(_member(obj, "name"), "name"),
        "id": _go_string(_member(obj, "id"), "id"),
        "source": {
            "architectures": architectures,
            "branch": _go_string(_member(source, "branch"), "branch"),
        },
    }


class Scheduler:
    """The cloud scheduler's `JobValidator`, as far as it talks to the ECR."""

    def __init__(self, http: aiohttp.ClientSession, ecr_url: str) -> None:
        self.http, self.ecr_url = http, ecr_url.rstrip("/")
        self.plugins: dict[str, dict[str, Any]] = {}

    async def _get(self, sub_path: str) -> Any:
        async with self.http.get(f"{self.ecr_url}/{sub_path}", headers=HEADERS) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise SchedulerError(f"Returned {resp.status}: {body[:200]!r}")
            content_type = resp.headers.get("Content-Type", "")
            if content_type != "application/json":
                raise SchedulerError(f"Content-Type is not JSON: {content_type}")
            return json.loads(body)

    async def load_database(self) -> None:
        """`LoadDatabase`: every app the ECR lists, by id."""
        listing = await self._get("api/apps")
        for item in listing.get("data") or []:
            plugin = decode_plugin_manifest(item)
            self.plugins[plugin["id"]] = plugin

    async def plugin_manifest_from_ecr(self, plugin_image: str) -> dict[str, Any]:
        """`GetPluginManifestFromECR("registry/ns/name:version")`."""
        parts = plugin_image.split("/")
        name, version = parts[-1].split(":")
        return decode_plugin_manifest(await self._get(f"api/apps/{parts[-2]}/{name}/{version}"))


@pytest.fixture(scope="module")
async def ecr_behind_gateway(database_url, auth_settings):
    config = Config(
        database_url=database_url,
        db_schema=f"ecr_scheduler_{sfx()}",
        use_bus=False,
        **auth_settings("ecr-api"),
    )
    ecr = await start_ecr(config)
    gateway = Gateway([("/api/", ecr.url)])
    await gateway.start()
    yield ecr, gateway.url
    await gateway.stop()
    await ecr.stop()


async def published_app(http, ecr_url: str, token: str, ns: str, *, public: bool) -> str:
    spec = app_spec(ns, "plugin-cloud-cover", "0.24.8")
    status, app = await call(http, "POST", f"{ecr_url}/api/submit", token=token, json=spec)
    assert status == 200, app
    if public:  # SAGE's published plugins are public
        change = {
            "operation": "add",
            "granteeType": "GROUP",
            "grantee": "AllUsers",
            "permission": "READ",
        }
        path = f"{ecr_url}/api/permissions/{ns}/plugin-cloud-cover"
        assert (await call(http, "PUT", path, token=token, json=change))[0] == 200
    return app["id"]


async def test_the_scheduler_loads_every_public_app_at_start(ecr_behind_gateway, http, make_user):
    ecr, gateway = ecr_behind_gateway
    token = await make_user(f"dev-{sfx()}")
    ns = f"plugins{sfx()}"
    app_id = await published_app(http, gateway, token, ns, public=True)
    private_id = await published_app(http, gateway, token, f"private{sfx()}", public=False)
    scheduler = Scheduler(http, gateway)
    await scheduler.load_database()
    assert scheduler.plugins[app_id] == {
        "name": "plugin-cloud-cover",
        "id": app_id,
        "source": {"architectures": ["linux/amd64", "linux/arm64"], "branch": "main"},
    }
    assert private_id not in scheduler.plugins  # it asks without a token


async def test_the_scheduler_validates_a_job_s_plugin_image(ecr_behind_gateway, http, make_user):
    ecr, gateway = ecr_behind_gateway
    token = await make_user(f"dev-{sfx()}")
    ns = f"plugins{sfx()}"
    await published_app(http, gateway, token, ns, public=True)
    scheduler = Scheduler(http, gateway + "/")  # ECRURL as operators write it
    manifest = await scheduler.plugin_manifest_from_ecr(
        f"registry.sagecontinuum.org/{ns}/plugin-cloud-cover:0.24.8"
    )
    assert manifest["source"]["architectures"] == ["linux/amd64", "linux/arm64"]
    with pytest.raises(SchedulerError, match="Returned 404"):
        await scheduler.plugin_manifest_from_ecr(f"registry/{ns}/plugin-cloud-cover:9.9.9")


async def test_every_answer_the_scheduler_reads_is_exactly_application_json(
    ecr_behind_gateway, http, make_user
):
    """The check the scheduler makes, for the listing forms and one app, with or without a token."""
    ecr, gateway = ecr_behind_gateway
    token = await make_user(f"dev-{sfx()}")
    ns = f"plugins{sfx()}"
    app_id = await published_app(http, gateway, token, ns, public=True)
    path = app_id.replace(":", "/")
    for sub in ("api/apps", "api/apps/", f"api/apps/{ns}", f"api/apps/{path}"):
        for headers in (HEADERS, {**HEADERS, "Authorization": f"sage {token}"}):
            for _ in range(2):  # the second listing comes from the cache
                async with http.get(f"{gateway}/{sub}", headers=headers) as resp:
                    assert resp.status == 200, sub
                    assert resp.headers["Content-Type"] == "application/json", sub
