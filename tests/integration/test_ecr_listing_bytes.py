"""`GET /api/apps` pages are each listed version's document exactly as `GET` of that version
answers it, joined in keyset order: the listing (one row per document from Postgres, joined in
Python) checked byte for byte against the one-document rendering, over a catalogue of varied
documents (non-ASCII, escapes, one long enough to be stored compressed), public, private and
shared repositories, each viewer, each filter and several pages; and what `public` and `shared`
select there."""

from __future__ import annotations

import json
import uuid

import aiohttp
import pytest

from tests.fixtures.auth import call, sage_header
from tests.support.ecr import app_spec, busless_config, running_ecr

PAGE = 2
UNICODE = 'Zählt Vögel — 鳥の歌 🐦 "quoted", back\\slash, tab\tand\nnew line; </script>'
LONG = " ".join(f"word{i} Größe" for i in range(2_000))[:16_000]  # ~16 KB: stored compressed


def sfx() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
async def ecr(database_url, auth_settings):
    config = busless_config(database_url, auth_settings("ecr-api"))
    async with running_ecr(config) as running:
        yield running


@pytest.fixture(scope="module")
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(scope="module")
async def catalogue(http, ecr, make_user):
    """Two users' namespaces: some repositories public, one shared, the rest private."""
    s = sfx()
    owner, other = f"owner-{s}", f"other-{s}"
    admin = f"admin-{s}"
    tokens = {
        owner: await make_user(owner),
        other: await make_user(other),
        admin: await make_user(admin, admin=True),
        None: None,
    }
    mine, theirs = f"mine{s}", f"theirs{s}"
    submissions = [
        (owner, app_spec(mine, "plain", "1.0.0")),
        (owner, app_spec(mine, "plain", "1.10.0")),
        (owner, app_spec(mine, "plain", "2.0.0-rc.1")),
        (owner, app_spec(mine, "unicode", description=UNICODE, keywords=["vögel", "鳥"])),
        (owner, app_spec(mine, "long", description=LONG, keywords=["audio"])),
        (other, app_spec(theirs, "shared", description="audio for two")),
        (other, app_spec(theirs, "open", "0.1.0")),
        (other, app_spec(theirs, "hidden")),
    ]
    for user, spec in submissions:
        status, body = await call(
            http, "POST", f"{ecr.url}/api/submit", token=tokens[user], json=spec
        )
        assert status == 200, body

    async def grant(user: str, repo: str, grantee_type: str, grantee: str) -> None:
        status, body = await call(
            http,
            "PUT",
            f"{ecr.url}/api/permissions/{repo}",
            token=tokens[user],
            json={
                "operation": "add",
                "granteeType": grantee_type,
                "grantee": grantee,
                "permission": "READ",
            },
        )
        assert status == 200, body

    await grant(owner, f"{mine}/unicode", "GROUP", "AllUsers")
    await grant(other, f"{theirs}/open", "GROUP", "AllUsers")
    await grant(other, f"{theirs}/shared", "USER", owner)
    return {
        "owner": owner,
        "other": other,
        "admin": admin,
        "tokens": tokens,
        "mine": mine,
        "theirs": theirs,
    }


async def _get(http: aiohttp.ClientSession, url: str, token: str | None) -> bytes:
    async with http.get(url, headers=sage_header(token) if token else {}) as resp:
        body = await resp.read()
        assert resp.status == 200, body
        return body


async def _walk(http, url: str, token: str | None) -> list[tuple[bytes, dict]]:
    """Every page of a listing, `PAGE` versions at a time: (body, parsed body)."""
    pages, cont = [], None
    while True:
        sep = "&" if "?" in url else "?"
        body = await _get(
            http, f"{url}{sep}limit={PAGE}" + (f"&continue={cont}" if cont else ""), token
        )
        page = json.loads(body)
        pages.append((body, page))
        cont = page["pagination"]["continuationToken"]
        if cont is None:
            return pages


LISTINGS = [
    ("owner", ""),
    ("owner", "public=true"),
    ("owner", "nopublic=true"),
    ("owner", "public=true&nopublic=true"),
    ("owner", "shared=true"),
    ("owner", "owner=true"),
    ("owner", "q=audio"),
    ("owner", "namespace={mine}"),
    ("owner", "route:{mine}/plain"),
    ("other", ""),
    ("other", "q=vögel"),
    ("admin", ""),
    ("admin", "public=true"),
    (None, ""),
    (None, "public=true"),
    (None, "route:{theirs}"),
]


@pytest.mark.parametrize(("viewer", "listing"), LISTINGS)
async def test_each_page_is_the_versions_documents_byte_for_byte(
    http, ecr, catalogue, viewer, listing
):
    token = catalogue["tokens"][catalogue[viewer] if viewer else None]
    listing = listing.format(**catalogue)
    if listing.startswith("route:"):
        url = f"{ecr.url}/api/apps/{listing.removeprefix('route:')}"
    else:
        url = f"{ecr.url}/api/apps" + (f"?{listing}" if listing else "")
    pages = await _walk(http, url, token)
    listed = []
    for body, page in pages:
        ids = [app["id"] for app in page["data"]]
        documents = []
        for ident in ids:
            ns_name, _, version = ident.rpartition(":")
            documents.append(await _get(http, f"{ecr.url}/api/apps/{ns_name}/{version}", token))
        cont = page["pagination"]["continuationToken"]
        expected = (
            b'{"pagination":{"continuationToken":'
            + json.dumps(cont).encode()
            + b'},"data":['
            + b",".join(documents)
            + b"]}"
        )
        assert body == expected
        listed += ids
    assert listed, "every listing here matches something"
    assert len(listed) == len(set(listed))


async def test_the_owners_listing_holds_what_they_may_read_in_keyset_order(http, ecr, catalogue):
    pages = await _walk(http, f"{ecr.url}/api/apps", catalogue["tokens"][catalogue["owner"]])
    mine, theirs = catalogue["mine"], catalogue["theirs"]
    assert [app["id"] for _, page in pages for app in page["data"]] == [
        f"{mine}/long:1.0.0",
        f"{mine}/plain:1.0.0",
        f"{mine}/plain:1.10.0",
        f"{mine}/plain:2.0.0-rc.1",
        f"{mine}/unicode:1.0.0",
        f"{theirs}/open:0.1.0",
        f"{theirs}/shared:1.0.0",
    ]
    flags = {app["name"]: app["public"] for _, page in pages for app in page["data"]}
    assert flags == {"long": False, "plain": False, "unicode": True, "open": True, "shared": False}
    long = next(app for _, page in pages for app in page["data"] if app["name"] == "long")
    assert long["description"] == LONG


@pytest.mark.parametrize(
    ("viewer", "query", "names"),
    [
        ("owner", "public=true", ["unicode", "open"]),
        (None, "public=true", ["unicode", "open"]),
        ("admin", "public=true", ["unicode", "open"]),
        ("owner", "public=true&nopublic=true", ["unicode"]),  # public and granted to them
        ("other", "public=true&nopublic=true", ["open"]),
        ("owner", "shared=true", ["shared"]),
    ],
)
async def test_public_and_shared_list_what_they_name(http, ecr, catalogue, viewer, query, names):
    token = catalogue["tokens"][catalogue[viewer] if viewer else None]
    pages = await _walk(http, f"{ecr.url}/api/apps?{query}", token)
    assert [app["name"] for _, page in pages for app in page["data"]] == names
