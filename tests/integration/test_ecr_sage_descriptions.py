"""SAGE-style app descriptions over HTTP against the real ECR API, auth service and Postgres.

The corpus (services/ecr-api/tests/corpus, shaped like published plugins' sage.yaml and sage.json)
is submitted as the portal and the CLI send it; the bad ones (a version that cannot be a tag, a
YAML bomb, a 10 MB file) get a clear 422 or 413 and leave nothing in the catalogue.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import asyncpg
import pytest

from sage_common.db import migrate
from sage_ecr.app import MIGRATIONS
from sage_ecr.spectypes import version_key
from sage_ecr.state import ECR
from tests.fixtures.auth import call
from tests.support.ecr import app_spec, busless_config, running_ecr
from tests.support.names import sfx

CORPUS = Path(__file__).parents[2] / "services" / "ecr-api" / "tests" / "corpus"
PORTAL = {"Content-Type": "text/plain;charset=UTF-8"}  # what the portal's fetch() sends


@pytest.fixture(scope="module")
async def ecr(database_url, auth_settings):
    async with running_ecr(busless_config(database_url, auth_settings("ecr-api"))) as running:
        yield running


@pytest.fixture(scope="module")
async def token(make_user):
    return await make_user(f"author-{sfx()}")


async def post(http, url, token, body, **kw):
    return await call(http, "POST", url, token=token, data=body, headers=PORTAL, **kw)


async def versions(http, ecr, token, ns) -> list[str]:
    status, page = await call(http, "GET", f"{ecr.url}/api/apps/{ns}", token=token)
    assert status == 200, page
    return [a["version"] for a in page["data"]]


@pytest.mark.parametrize(
    "name", sorted(p.name for p in CORPUS.iterdir() if p.name != "BirdSong.yaml")
)
async def test_each_sage_style_description_is_stored_and_shown_as_written(http, ecr, token, name):
    ns = f"lab{sfx()}"
    params = {"namespace": ns, "url": "https://git.example.org/lab/from-request.git"}
    body = (CORPUS / name).read_bytes()
    status, app = await post(http, f"{ecr.url}/api/submit", token, body, params=params)
    assert status == 200, app
    assert app["namespace"] == ns and app["source"]["url"] and app["state"] == "submitted"
    status, got = await call(
        http, "GET", f"{ecr.url}/api/apps/{ns}/{app['name']}/{app['version']}", token=token
    )
    assert status == 200
    assert got == {k: v for k, v in app.items() if k != "warnings"}


async def test_unknown_fields_come_back_in_the_app_document_and_the_answer_warns(http, ecr, token):
    ns = f"lab{sfx()}"
    body = (CORPUS / "object-counter.yaml").read_bytes()
    status, app = await post(http, f"{ecr.url}/api/submit?namespace={ns}", token, body)
    assert status == 200, app
    assert app["maintainers"] == ["pete@example.org"]
    assert app["source"]["submodules"] is True and app["inputs"][2]["unit"] == "address"
    assert "unknown field 'maintainers' kept as is" in app["warnings"]
    _, listed = await call(http, "GET", f"{ecr.url}/api/apps/{ns}", token=token)
    assert listed["data"][0]["maintainers"] == ["pete@example.org"]


async def test_source_testing_and_four_part_versions_as_published_apps_write_them(http, ecr, token):
    ns = f"lab{sfx()}"
    status, app = await post(
        http,
        f"{ecr.url}/api/submit?namespace={ns}",
        token,
        (CORPUS / "sound-events.yaml").read_bytes(),
    )
    assert status == 200 and app["testing"]["command"] == ["test.py"]
    assert "testing" not in app["source"]
    status, app = await post(
        http,
        f"{ecr.url}/api/submit?namespace={ns}",
        token,
        (CORPUS / "thermal-sampler.yaml").read_bytes(),
    )
    assert status == 200 and app["id"] == f"{ns}/thermal-sampler:1.22.4.13"


async def test_a_name_with_capitals_is_a_422_saying_what_to_write(http, ecr, token):
    status, body = await post(
        http, f"{ecr.url}/api/submit", token, (CORPUS / "BirdSong.yaml").read_bytes()
    )
    assert status == 422 and "write 'birdsong_plugin'" in body["error"]


async def test_versions_are_listed_in_numeric_order(http, ecr, token):
    ns = f"lab{sfx()}"
    order = ["latest", "0.24.8.20", "1.0-rc.1", "1.0", "1.2", "1.10", "1.22.4.9", "1.22.4.13"]
    for version in reversed(order):
        status, body = await call(
            http,
            "POST",
            f"{ecr.url}/api/submit",
            token=token,
            json=app_spec(ns, "sorted", version),
        )
        assert status == 200, body
    assert await versions(http, ecr, token, ns) == order


async def test_the_portal_and_curl_forms_of_submission(http, ecr, token):
    ns = f"lab{sfx()}"
    url = "https://git.example.org/lab/wildlife-trap.git"
    form = aiohttp.FormData()
    form.add_field("namespace", ns)
    form.add_field("url", url)
    form.add_field("branch", "dev")
    form.add_field("file", (CORPUS / "wildlife-trap.yaml").read_bytes(), filename="sage.yaml")
    status, app = await call(http, "POST", f"{ecr.url}/api/submit", token=token, data=form)
    assert status == 200, app
    assert app["source"]["url"] == url and app["source"]["branch"] == "dev"
    assert app["homepage"] == "" and app["license"] == ""  # SAGE shows absent text as ""
    # SAGE's documented form: the URL names namespace, name and version; the file need not
    status, app = await post(
        http,
        f"{ecr.url}/api/apps/{ns}/station/0.23.2.15?url={url}",
        token,
        (CORPUS / "weather-station.yaml").read_bytes(),
    )
    assert status == 200 and app["id"] == f"{ns}/station:0.23.2.15"
    assert app["source"]["url"] == url


async def test_force_true_replaces_a_version_that_is_not_frozen(http, ecr, token):
    ns = f"lab{sfx()}"
    spec = app_spec(ns, "redo", "1.0")
    assert (await call(http, "POST", f"{ecr.url}/api/submit", token=token, json=spec))[0] == 200
    changed = {**spec, "description": "second try"}
    status, body = await call(http, "POST", f"{ecr.url}/api/submit", token=token, json=changed)
    assert status == 409
    assert body["error"] == (
        f"App {ns}/redo:1.0 already exists but is not frozen. Use query force=true to overwrite."
    )
    status, app = await call(
        http, "POST", f"{ecr.url}/api/submit?force=true", token=token, json=changed
    )
    assert status == 200 and app["description"] == "second try" and app["build_number"] == 2
    assert await versions(http, ecr, token, ns) == ["1.0"]
    async with ecr.app[ECR].store.transaction() as tx:
        app = await tx.get_app(ns, "redo", "1.0")
        assert app is not None
        await tx.update_app(app.id, frozen=True)
    status, body = await call(
        http, "POST", f"{ecr.url}/api/submit?force=true", token=token, json=spec
    )
    assert status == 409 and "is frozen" in body["error"]
    _, got = await call(http, "GET", f"{ecr.url}/api/apps/{ns}/redo/1.0", token=token)
    assert got["description"] == "second try"


BOMB = "a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{c}: &{c} [{','.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)


@pytest.mark.parametrize(
    ("case", "status", "says"),
    [
        ("version 1.0.0+build.7", 422, "write '1.0.0-build.7'"),
        ("version '2 beta'", 422, "write '2-beta'"),
        ("a YAML bomb", 422, "expands to more than"),
        ("a 10 MB file", 413, "larger than 256 KiB"),
    ],
)
async def test_bad_descriptions_are_refused_clearly_and_nothing_is_stored(
    http, ecr, token, case, status, says
):
    ns = f"lab{sfx()}"
    good = (CORPUS / "thermal-sampler.yaml").read_text()
    body = {
        "version 1.0.0+build.7": good.replace('"1.22.4.13"', '"1.0.0+build.7"'),
        "version '2 beta'": good.replace('"1.22.4.13"', '"2 beta"'),
        "a YAML bomb": good + BOMB,
        "a 10 MB file": good + "padding: " + "x" * (10 * 1024 * 1024) + "\n",
    }[case]
    got, answer = await post(http, f"{ecr.url}/api/submit?namespace={ns}", token, body.encode())
    assert (got, answer["status"]) == (status, status)
    assert says in answer["error"]
    assert (await call(http, "GET", f"{ecr.url}/api/namespaces/{ns}", token=token))[0] == 404
    assert await versions(http, ecr, token, ns) == []


async def test_migration_0004_rewrites_the_semver_keys_stored_before_it(database_url, tmp_path):
    schema = f"ecr_mig_{sfx()}"
    early = tmp_path / "migrations"
    early.mkdir()
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        for path in sorted(MIGRATIONS.glob("000[123]_*.sql")):
            (early / path.name).write_text(path.read_text())
        await migrate(pool, schema, early)
        old = {"1.2.3": "0000000001.0000000002.0000000003~"}
        old["1.10.0-rc.1"] = "0000000001.0000000010.0000000000-rc.0000000001"
        async with pool.acquire() as conn:
            await conn.execute(f"INSERT INTO {schema}.namespaces VALUES ('lab', 'u')")
            await conn.execute(f"INSERT INTO {schema}.repositories VALUES ('lab', 'a', 'u')")
            for version, key in old.items():
                await conn.execute(
                    f"""INSERT INTO {schema}.apps (namespace, name, version, version_key, owner,
                            spec, architectures, gpu, state, search, doc)
                        VALUES ('lab', 'a', $1, $2, 'u', '{{}}', '{{}}', 'none', 'submitted',
                                ''::tsvector, '{{}}')""",
                    version,
                    key,
                )
        applied = await migrate(pool, schema, MIGRATIONS)
        assert applied[0] == "service:0004_version_order"  # and the later ones after it
        async with pool.acquire() as conn:
            rows = await conn.fetch(f"SELECT version, version_key FROM {schema}.apps")
        assert {r["version"]: r["version_key"] for r in rows} == {v: version_key(v) for v in old}
    finally:
        async with pool.acquire() as conn:
            await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await pool.close()
