"""The ECR API over HTTP with the real auth service and Postgres: submission, bad input, listing,
search, namespaces, repositories, permissions and registry access."""

from __future__ import annotations

import json

import pytest

from tests.fixtures.auth import call
from tests.support.ecr import app_spec, busless_config, running_ecr
from tests.support.names import sfx

YAML = {"Content-Type": "application/yaml"}


@pytest.fixture(scope="module")
async def ecr(database_url, auth_settings):
    config = busless_config(
        database_url, auth_settings("ecr-api"), registry_access_clients=["auth", "profiler"]
    )
    async with running_ecr(config) as running:
        yield running


async def submit(http, ecr, token, spec, *, as_yaml=False):
    if as_yaml:
        import yaml

        return await call(
            http,
            "POST",
            f"{ecr.url}/api/submit",
            token=token,
            data=yaml.safe_dump(spec),
            headers=YAML,
        )
    return await call(http, "POST", f"{ecr.url}/api/submit", token=token, json=spec)


async def test_yaml_submission_stores_the_app_and_gives_the_namespace_to_its_submitter(
    http, ecr, people
):
    ns = f"lab{sfx()}"
    status, app = await submit(http, ecr, people["owner"], app_spec(ns, "counter"), as_yaml=True)
    assert status == 200, app
    assert app["id"] == f"{ns}/counter:1.0.0"
    assert app["owner"] == people["owner_name"] and app["state"] == "submitted"
    assert app["source"]["architectures"] == ["linux/amd64", "linux/arm64"]
    assert app["hardware"]["min_memory"] == 256 * 1024 * 1024
    assert app["frozen"] is False and app["public"] is False and app["build_number"] == 1
    status, got = await call(
        http, "GET", f"{ecr.url}/api/apps/{ns}/counter/1.0.0", token=people["owner"]
    )
    assert status == 200 and got == app
    _, namespaces = await call(http, "GET", f"{ecr.url}/api/namespaces", token=people["owner"])
    assert {"id": ns, "owner_id": people["owner_name"], "type": "namespace"} in namespaces["data"]
    _, grants = await call(http, "GET", f"{ecr.url}/api/permissions/{ns}", token=people["owner"])
    assert grants == [
        {
            "grantee": people["owner_name"],
            "granteeType": "USER",
            "permission": "FULL_CONTROL",
            "resourceName": ns,
            "resourceType": "namespace",
        }
    ]


async def test_the_version_in_the_url_route_fills_the_description(http, ecr, people):
    ns = f"lab{sfx()}"
    spec = app_spec(ns, "counter")
    for key in ("namespace", "name", "version"):
        del spec[key]
    status, app = await call(
        http, "POST", f"{ecr.url}/api/apps/{ns}/counter/2.1.0", token=people["owner"], json=spec
    )
    assert status == 200 and app["id"] == f"{ns}/counter:2.1.0"
    assert "warnings" not in app
    # As in SAGE, the URL names the version; the description's own is replaced, with a warning.
    status, body = await call(
        http,
        "POST",
        f"{ecr.url}/api/apps/{ns}/counter/2.2.0",
        token=people["owner"],
        json={**spec, "version": "9.9.9"},
    )
    assert status == 200 and body["id"] == f"{ns}/counter:2.2.0"
    assert body["warnings"] == [
        "version '9.9.9' in the description replaced by '2.2.0' from the request"
    ]


async def test_validation_lists_every_problem_with_its_path(http, ecr, people):
    spec = app_spec(f"lab{sfx()}", "Bad Name", version="1.0+build.5", colour="red")
    spec["source"]["architectures"] = ["linux/sparc"]
    spec["inputs"] = [{"id": "rate", "type": "int", "default": "fast"}]
    status, body = await submit(http, ecr, people["owner"], spec)
    assert status == 422
    assert body["error"]  # SAGE clients look for this member
    assert "write 'bad-name'" in body["error"] and "write '1.0-build.5'" in body["error"]
    locs = {".".join(e["loc"]) for e in body["errors"]}
    assert {"name", "version", "source.architectures.0"} <= locs
    assert "colour" not in locs  # an unknown field is kept, not refused
    assert any(loc.startswith("inputs.0") for loc in locs)


async def test_a_source_url_with_credentials_is_a_422_naming_the_field_and_stores_nothing(
    http, ecr, people
):
    ns = f"lab{sfx()}"
    token_url = "https://oauth2:glpat-s3cretvalue0123@gitlab.com/lab/app.git"
    spec = app_spec(ns, "leaky")
    spec["source"]["url"] = token_url
    status, body = await submit(http, ecr, people["owner"], spec, as_yaml=True)
    assert status == 422, body
    assert [e["loc"] for e in body["errors"]] == [["source", "url"]]
    assert "public repository" in body["errors"][0]["msg"]
    # the same URL sent with the request instead of in the file (`sage ecr app submit --url`)
    del spec["source"]["url"]
    status, again = await call(
        http,
        "POST",
        f"{ecr.url}/api/submit",
        token=people["owner"],
        params={"url": "https://ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/o/r"},
        json=spec,
    )
    assert status == 422 and [e["loc"] for e in again["errors"]] == [["source", "url"]]
    for answer in (body, again):
        assert "s3cretvalue" not in json.dumps(answer) and "ghp_" not in json.dumps(answer)
    app_url = f"{ecr.url}/api/apps/{ns}/leaky/1.0.0"
    assert (await call(http, "GET", app_url, token=people["admin"]))[0] == 404
    status, _ = await call(http, "GET", f"{ecr.url}/api/namespaces/{ns}", token=people["admin"])
    assert status == 404


async def test_a_plain_ssh_source_url_is_accepted(http, ecr, people):
    ns = f"lab{sfx()}"
    spec = app_spec(ns, "viassh")
    spec["source"]["url"] = f"git@github.com:{ns}/viassh.git"
    status, app = await submit(http, ecr, people["owner"], spec)
    assert status == 200, app
    assert app["source"]["url"] == f"git@github.com:{ns}/viassh.git"


async def test_body_over_256_kib_is_413(http, ecr, people):
    spec = app_spec(f"lab{sfx()}", "big", description="x" * (257 * 1024))
    status, body = await submit(http, ecr, people["owner"], spec)
    assert status == 413 and body["status"] == 413
    status, _ = await call(
        http,
        "POST",
        f"{ecr.url}/api/submit",
        token=people["owner"],
        data=b"a: " + b"b" * (300 * 1024),
        headers=YAML,
    )
    assert status == 413


async def test_yaml_bombs_and_deep_nesting_are_refused(http, ecr, people):
    bomb = "a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{c}: &{c} [{','.join(['*' + p] * 10)}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    status, body = await call(
        http, "POST", f"{ecr.url}/api/submit", token=people["owner"], data=bomb, headers=YAML
    )
    assert status == 422 and "expands to more than" in body["detail"]
    deep = "metadata: " + "[" * 5000 + "]" * 5000
    status, body = await call(
        http, "POST", f"{ecr.url}/api/submit", token=people["owner"], data=deep, headers=YAML
    )
    assert status == 422 and "nests deeper" in body["detail"]


async def test_duplicate_version_is_409(http, ecr, people):
    spec = app_spec(f"lab{sfx()}", "dup")
    assert (await submit(http, ecr, people["owner"], spec))[0] == 200
    status, body = await submit(http, ecr, people["owner"], spec)
    assert status == 409 and "already exists" in body["detail"]


async def test_an_unapproved_user_may_submit_but_not_build_as_in_sage(http, ecr, people):
    ns = f"lab{sfx()}"
    spec = app_spec(ns, "early")
    url = f"{ecr.url}/api/apps/{ns}/early/1.0.0"
    assert (await submit(http, ecr, None, spec))[0] == 401
    assert (await call(http, "GET", url, token=people["admin"]))[0] == 404  # nothing stored
    status, app = await submit(http, ecr, people["unapproved"], spec)
    assert status == 200, app
    assert (app["state"], app["build_number"]) == ("registered", 0)
    assert app["owner"] == people["unapproved_name"]
    status, body = await call(
        http, "POST", f"{ecr.url}/api/builds/{ns}/early/1.0.0", token=people["unapproved"]
    )
    assert status == 403 and "not approved to build" in body["detail"]
    _, state = await call(http, "GET", url + "/status", token=people["unapproved"])
    assert state["state"] == "registered"
    assert [(h["from"], h["to"], h["cause"]) for h in state["history"]] == [
        (None, "registered", "submitted")
    ]
    # an administrator (or the owner, once approved) builds it: it enters the pipeline
    status, body = await call(
        http, "POST", f"{ecr.url}/api/builds/{ns}/early/1.0.0", token=people["admin"]
    )
    assert (status, body) == (200, {"build_number": 1})
    _, state = await call(http, "GET", url + "/status", token=people["unapproved"])
    assert state["state"] == "submitted"
    assert state["history"][-1]["from"] == "registered"


async def test_someone_elses_namespace_is_closed_until_they_grant_write(http, ecr, people):
    ns = f"lab{sfx()}"
    assert (await submit(http, ecr, people["owner"], app_spec(ns, "one")))[0] == 200
    assert (await submit(http, ecr, people["other"], app_spec(ns, "two")))[0] == 403
    change = {
        "operation": "add",
        "granteeType": "USER",
        "grantee": people["other_name"],
        "permission": "WRITE",
    }
    status, body = await call(
        http, "PUT", f"{ecr.url}/api/permissions/{ns}", token=people["owner"], json=change
    )
    assert (status, body) == (200, {"added": 1})
    status, app = await submit(http, ecr, people["other"], app_spec(ns, "two"))
    assert status == 200 and app["owner"] == people["other_name"]


async def test_public_repository_is_readable_by_anyone_private_is_404(http, ecr, people):
    ns = f"lab{sfx()}"
    await submit(http, ecr, people["owner"], app_spec(ns, "open"))
    url = f"{ecr.url}/api/apps/{ns}/open/1.0.0"
    assert (await call(http, "GET", url))[0] == 404
    assert (await call(http, "GET", url, token=people["other"]))[0] == 404
    public = {
        "operation": "add",
        "granteeType": "GROUP",
        "grantee": "AllUsers",
        "permission": "READ",
    }
    assert (
        await call(
            http, "PUT", f"{ecr.url}/api/permissions/{ns}/open", token=people["owner"], json=public
        )
    )[0] == 200
    status, app = await call(http, "GET", url)
    assert status == 200 and app["public"] is True
    _, listed = await call(http, "GET", f"{ecr.url}/api/apps?public=true&namespace={ns}")
    assert [a["id"] for a in listed["data"]] == [f"{ns}/open:1.0.0"]


async def test_all_users_can_only_get_read(http, ecr, people):
    ns = f"lab{sfx()}"
    await submit(http, ecr, people["owner"], app_spec(ns, "app"))
    change = {
        "operation": "add",
        "granteeType": "GROUP",
        "grantee": "AllUsers",
        "permission": "WRITE",
    }
    status, body = await call(
        http, "PUT", f"{ecr.url}/api/permissions/{ns}/app", token=people["owner"], json=change
    )
    assert status == 422 and "AllUsers" in json.dumps(body)


async def test_the_owners_full_control_cannot_be_removed(http, ecr, people):
    ns = f"lab{sfx()}"
    await submit(http, ecr, people["owner"], app_spec(ns, "app"))
    url = f"{ecr.url}/api/permissions/{ns}/app"
    grant = {
        "operation": "add",
        "granteeType": "USER",
        "grantee": people["other_name"],
        "permission": "READ",
    }
    await call(http, "PUT", url, token=people["owner"], json=grant)
    status, body = await call(http, "PUT", url, token=people["owner"], json={"operation": "delete"})
    assert (status, body) == (200, {"deleted": 1})
    _, grants = await call(http, "GET", url, token=people["owner"])
    assert [(g["grantee"], g["permission"]) for g in grants] == [
        (people["owner_name"], "FULL_CONTROL")
    ]


async def test_listing_pages_with_continuation_tokens(http, ecr, people):
    ns = f"lab{sfx()}"
    versions = ["1.0.0", "1.2.0", "1.10.0", "2.0.0-rc.1", "2.0.0"]
    for version in versions:
        assert (await submit(http, ecr, people["owner"], app_spec(ns, "paged", version)))[0] == 200
    seen, token, pages = [], None, 0
    while True:
        query = f"limit=2&namespace={ns}" + (f"&continue={token}" if token else "")
        status, page = await call(http, "GET", f"{ecr.url}/api/apps?{query}", token=people["owner"])
        assert status == 200
        pages += 1
        seen += [a["version"] for a in page["data"]]
        token = page["pagination"]["continuationToken"]
        if token is None:
            break
    assert pages == 3
    assert seen == ["1.0.0", "1.2.0", "1.10.0", "2.0.0-rc.1", "2.0.0"]  # semver order, no repeats
    _, same = await call(http, "GET", f"{ecr.url}/api/apps/{ns}/paged", token=people["owner"])
    assert [a["version"] for a in same["data"]] == seen


async def test_a_continuation_token_is_refused_with_other_filters(http, ecr, people):
    ns = f"lab{sfx()}"
    for version in ("1.0.0", "1.0.1"):
        await submit(http, ecr, people["owner"], app_spec(ns, "app", version))
    _, page = await call(
        http, "GET", f"{ecr.url}/api/apps?limit=1&namespace={ns}", token=people["owner"]
    )
    token = page["pagination"]["continuationToken"]
    status, _ = await call(
        http, "GET", f"{ecr.url}/api/apps?limit=1&continue={token}", token=people["owner"]
    )
    assert status == 400
    assert (await call(http, "GET", f"{ecr.url}/api/apps?continue=garbage"))[0] == 400
    assert (await call(http, "GET", f"{ecr.url}/api/apps?limit=1001"))[0] == 422


async def test_full_text_search_over_name_description_and_keywords(http, ecr, people):
    ns = f"lab{sfx()}"
    await submit(
        http,
        ecr,
        people["owner"],
        app_spec(ns, "bird-song", description="Listens for birds", keywords=["audio", "ecology"]),
    )
    await submit(
        http,
        ecr,
        people["owner"],
        app_spec(ns, "plate-reader", description="Reads plates", keywords=["vision"]),
    )

    async def found(q: str) -> list[str]:
        _, page = await call(
            http,
            "GET",
            f"{ecr.url}/api/apps",
            token=people["owner"],
            params={"q": q, "namespace": ns},
        )
        return [a["name"] for a in page["data"]]

    assert await found("bird") == ["bird-song"]
    assert await found("birds listening") == ["bird-song"]  # stemmed
    assert await found("ecology") == ["bird-song"]
    assert await found("vision") == ["plate-reader"]
    assert await found("submarine") == []


async def test_filters_by_owner_shared_architecture_gpu_and_state(http, ecr, people):
    ns = f"lab{sfx()}"
    arm = app_spec(
        ns,
        "arm-only",
        source={"url": "https://g.example/a.git", "architectures": ["linux/arm64"]},
        hardware={"gpu": "required"},
    )
    await submit(http, ecr, people["owner"], arm)
    await submit(http, ecr, people["owner"], app_spec(ns, "cpu", hardware={"gpu": "none"}))
    await call(
        http,
        "PUT",
        f"{ecr.url}/api/permissions/{ns}/cpu",
        token=people["owner"],
        json={
            "operation": "add",
            "granteeType": "USER",
            "grantee": people["other_name"],
            "permission": "READ",
        },
    )

    async def names(token, **params) -> list[str]:
        status, page = await call(
            http, "GET", f"{ecr.url}/api/apps", token=token, params={"namespace": ns, **params}
        )
        assert status == 200, page
        return sorted(a["name"] for a in page["data"])

    owner = people["owner"]
    assert await names(owner, architecture="linux/amd64") == ["cpu"]
    assert await names(owner, gpu="required") == ["arm-only"]
    assert await names(owner, gpu="false") == ["cpu"]
    assert await names(owner, owner="true") == ["arm-only", "cpu"]
    assert await names(owner, owner=people["other_name"]) == []
    assert await names(owner, state="submitted") == ["arm-only", "cpu"]
    assert await names(owner, published="true") == []
    assert await names(people["other"], shared="true") == ["cpu"]
    assert await names(people["other"]) == ["cpu"]


async def test_namespaces_and_repositories(http, ecr, people):
    ns = f"team{sfx()}"
    status, body = await call(
        http, "PUT", f"{ecr.url}/api/namespaces", token=people["owner"], json={"id": ns}
    )
    assert (status, body) == (
        200,
        {"id": ns, "owner_id": people["owner_name"], "type": "namespace"},
    )
    assert (
        await call(http, "PUT", f"{ecr.url}/api/namespaces", token=people["other"], json={"id": ns})
    )[0] == 409
    assert (
        await call(
            http,
            "PUT",
            f"{ecr.url}/api/namespaces",
            token=people["owner"],
            json={"id": "Not Valid"},
        )
    )[0] == 422
    await submit(http, ecr, people["owner"], app_spec(ns, "tool"))
    status, got = await call(http, "GET", f"{ecr.url}/api/namespaces/{ns}", token=people["owner"])
    assert status == 200 and [r["name"] for r in got["repositories"]] == ["tool"]
    _, repos = await call(http, "GET", f"{ecr.url}/api/repositories/{ns}", token=people["owner"])
    assert repos["data"] == [
        {
            "type": "repository",
            "namespace": ns,
            "name": "tool",
            "owner_id": people["owner_name"],
            "public": False,
        }
    ]
    status, repo = await call(
        http, "GET", f"{ecr.url}/api/repositories/{ns}/tool", token=people["owner"]
    )
    assert status == 200 and [v["id"] for v in repo["versions"]] == [f"{ns}/tool:1.0.0"]
    # not empty: neither the repository nor the namespace goes
    assert (
        await call(http, "DELETE", f"{ecr.url}/api/repositories/{ns}/tool", token=people["owner"])
    )[0] == 409
    assert (await call(http, "DELETE", f"{ecr.url}/api/namespaces/{ns}", token=people["owner"]))[
        0
    ] == 409
    assert (
        await call(http, "DELETE", f"{ecr.url}/api/apps/{ns}/tool/1.0.0", token=people["owner"])
    ) == (200, {"deleted": 1})
    assert (
        await call(http, "DELETE", f"{ecr.url}/api/repositories/{ns}/tool", token=people["owner"])
    ) == (200, {"deleted": 1})
    assert (
        await call(http, "DELETE", f"{ecr.url}/api/namespaces/{ns}", token=people["owner"])
    ) == (200, {"deleted": 1})
    assert (await call(http, "GET", f"{ecr.url}/api/namespaces/{ns}", token=people["owner"]))[
        0
    ] == 404


async def test_the_app_schema_is_served_as_json_schema(http, ecr):
    status, schema = await call(http, "GET", f"{ecr.url}/api/schema/app.json")
    assert status == 200
    assert schema["additionalProperties"] is False and "testing" in schema["properties"]
    status, doc = await call(http, "GET", f"{ecr.url}/openapi.json")
    assert status == 200 and "/api/apps/{namespace}/{name}/{version}/review" in doc["paths"]


async def test_registry_access_follows_repository_permissions(http, ecr, people, service_secrets):
    ns = f"lab{sfx()}"
    await submit(http, ecr, people["owner"], app_spec(ns, "img"))
    asker = service_secrets["profiler"]  # listed in registry_access_clients for this test

    async def actions(username: str, repository: str = f"{ns}/img", **extra) -> list[str]:
        status, body = await call(
            http,
            "GET",
            f"{ecr.url}/api/registry/access",
            token=asker,
            params={"username": username, "repository": repository, **extra},
        )
        assert status == 200, body
        return body["actions"]

    assert await actions(people["owner_name"]) == ["pull"]
    assert await actions(people["other_name"]) == []
    assert await actions("") == []
    assert await actions("service:builder") == ["pull", "push"]
    assert await actions("service:profiler") == ["pull"]
    assert await actions("someone", admin="true") == ["pull"]
    assert await actions(people["owner_name"], repository=f"{ns}/missing") == []
    await call(
        http,
        "PUT",
        f"{ecr.url}/api/permissions/{ns}/img",
        token=people["owner"],
        json={
            "operation": "add",
            "granteeType": "GROUP",
            "grantee": "AllUsers",
            "permission": "READ",
        },
    )
    assert await actions("") == ["pull"]
    # only trusted callers may ask
    for token in (service_secrets["builder"], people["owner"]):
        status, _ = await call(
            http,
            "GET",
            f"{ecr.url}/api/registry/access",
            token=token,
            params={"username": "x", "repository": f"{ns}/img"},
        )
        assert status == 403


async def test_sage_curl_examples_without_a_json_content_type_still_work(http, ecr, people):
    """SAGE's docs use `curl -X PUT ... -d '{...}'`, which sends form data."""
    ns = f"lab{sfx()}"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    status, body = await call(
        http,
        "PUT",
        f"{ecr.url}/api/namespaces",
        token=people["owner"],
        data=json.dumps({"id": ns}),
        headers=form,
    )
    assert (status, body["id"]) == (200, ns)
    change = {
        "operation": "add",
        "granteeType": "GROUP",
        "grantee": "AllUsers",
        "permission": "READ",
    }
    status, body = await call(
        http,
        "PUT",
        f"{ecr.url}/api/permissions/{ns}",
        token=people["owner"],
        data=json.dumps(change),
        headers=form,
    )
    assert (status, body) == (200, {"added": 1})
    status, body = await call(
        http,
        "PUT",
        f"{ecr.url}/api/permissions/{ns}",
        token=people["owner"],
        data="operation=add",
        headers=form,
    )
    assert status == 400 and "not valid JSON" in body["detail"]
