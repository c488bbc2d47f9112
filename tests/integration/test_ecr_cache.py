"""Listings are cached per process and still never stale: two replicas on one database, writes
through either, an operator's SQL, and the listener connection cut."""

from __future__ import annotations

import asyncpg
import pytest

from sage_ecr.cache import listener_name
from sage_ecr.state import LISTING_CACHE
from tests.fixtures.auth import call
from tests.support.bus import eventually
from tests.support.ecr import app_spec, busless_config, start_ecr
from tests.support.names import sfx


@pytest.fixture(scope="module")
async def replicas(database_url, auth_settings):
    config = busless_config(database_url, auth_settings("ecr-api"), "ecr_cache")
    a = await start_ecr(config)
    b = await start_ecr(config)
    for replica in (a, b):
        await eventually(lambda r=replica: r.app[LISTING_CACHE].enabled)
    yield a, b
    await b.stop()
    await a.stop()


async def names(http, replica, token, ns) -> list[str]:
    status, page = await call(http, "GET", f"{replica.url}/api/apps?namespace={ns}", token=token)
    assert status == 200
    return sorted(a["id"] for a in page["data"])


def shows(http, replica, token, ns, expected):
    """A check for `eventually`: the replica lists exactly `expected` to `token`."""

    async def check() -> bool:
        return await names(http, replica, token, ns) == expected

    return check


async def test_a_write_through_one_replica_empties_the_others_cache(replicas, http, make_user):
    a, b = replicas
    s = sfx()
    owner, friend = await make_user(f"owner-{s}"), await make_user(f"friend-{s}")
    ns = f"lab{s}"
    await call(http, "POST", f"{a.url}/api/submit", token=owner, json=app_spec(ns, "one"))
    assert await names(http, b, owner, ns) == [f"{ns}/one:1.0.0"]
    assert await names(http, b, friend, ns) == []
    assert len(b.app[LISTING_CACHE]) >= 2  # both pages are now served from b's memory

    await call(http, "POST", f"{a.url}/api/submit", token=owner, json=app_spec(ns, "two"))
    await eventually(shows(http, b, owner, ns, [f"{ns}/one:1.0.0", f"{ns}/two:1.0.0"]))
    await call(
        http,
        "PUT",
        f"{a.url}/api/permissions/{ns}/one",
        token=owner,
        json={
            "operation": "add",
            "granteeType": "USER",
            "grantee": f"friend-{s}",
            "permission": "READ",
        },
    )
    await eventually(shows(http, b, friend, ns, [f"{ns}/one:1.0.0"]))


async def test_a_replica_reads_its_own_writes_at_once(replicas, http, make_user):
    a, _ = replicas
    s = sfx()
    owner = await make_user(f"owner-{s}")
    ns = f"lab{s}"
    await call(http, "POST", f"{a.url}/api/submit", token=owner, json=app_spec(ns, "one"))
    assert await names(http, a, owner, ns) == [f"{ns}/one:1.0.0"]
    await call(http, "DELETE", f"{a.url}/api/apps/{ns}/one/1.0.0", token=owner)
    assert await names(http, a, owner, ns) == []  # no wait: the local write emptied the cache


async def test_an_operators_sql_is_seen_too(replicas, http, make_user, database_url):
    a, b = replicas
    s = sfx()
    owner = await make_user(f"owner-{s}")
    ns = f"lab{s}"
    await call(http, "POST", f"{a.url}/api/submit", token=owner, json=app_spec(ns, "one"))
    assert await names(http, b, owner, ns) == [f"{ns}/one:1.0.0"]
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f"DELETE FROM {a.config.db_schema}.apps WHERE namespace = $1", ns)
    finally:
        await conn.close()
    await eventually(shows(http, b, owner, ns, []))


async def test_while_the_listener_is_cut_nothing_is_cached_then_it_comes_back(
    replicas, http, make_user, database_url
):
    a, b = replicas
    cache = b.app[LISTING_CACHE]
    s = sfx()
    owner = await make_user(f"owner-{s}")
    ns = f"lab{s}"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            listener_name(b.config.db_schema),
        )
        await eventually(lambda: not cache.enabled)
        await call(http, "POST", f"{a.url}/api/submit", token=owner, json=app_spec(ns, "one"))
        assert await names(http, b, owner, ns) == [f"{ns}/one:1.0.0"]
        assert len(cache) == 0
        await eventually(lambda: cache.enabled, within=15)
        await admin.execute(f"DELETE FROM {a.config.db_schema}.apps WHERE namespace = $1", ns)
        await eventually(shows(http, b, owner, ns, []))
    finally:
        await admin.close()
