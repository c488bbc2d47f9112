"""The bucket and permission routes, through HTTP, on the real Postgres (S3 and auth faked)."""

from __future__ import annotations

import re
import uuid

from .conftest import Api

TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


async def test_create_bucket_from_query_answers_sage_bucket_json(api: Api) -> None:
    alice = api.tokens.add("alice")
    async with api.client.post(
        "/api/v1/objects",
        params={"type": "training-data", "name": "camera7"},
        headers=api.auth(alice),
    ) as r:
        assert r.status == 200
        body = await r.json()
    assert set(body) == {
        "id",
        "name",
        "owner",
        "type",
        "time_created",
        "time_last_updated",
        "metadata",
    }
    assert (body["name"], body["owner"], body["type"]) == ("camera7", "alice", "training-data")
    assert uuid.UUID(body["id"])
    assert TIME_RE.match(body["time_created"]) and TIME_RE.match(body["time_last_updated"])


async def test_create_bucket_from_json_body_with_metadata(api: Api) -> None:
    alice = api.tokens.add("alice")
    async with api.client.post(
        "/api/v1/objects",
        json={"type": "Model", "name": "resnet", "metadata": {"arch": "r50"}},
        headers=api.auth(alice),
    ) as r:
        assert r.status == 200
        body = await r.json()
    assert body["type"] == "model" and body["metadata"] == {"arch": "r50"}


async def test_create_bucket_refuses_unknown_type_and_bad_name(api: Api) -> None:
    alice = api.tokens.add("alice")
    for params in (
        {"type": "pictures"},
        {"type": "model", "name": "../etc"},
        {"type": "model", "name": "x" * 200},
    ):
        async with api.client.post("/api/v1/objects", params=params, headers=api.auth(alice)) as r:
            assert r.status in (400, 422)
            assert "error" in await r.json()


async def test_anonymous_and_unapproved_cannot_create_buckets(api: Api) -> None:
    async with api.client.post("/api/v1/objects", params={"type": "model"}) as r:
        assert r.status == 401
    pending = api.tokens.add("newcomer", approved=False)
    async with api.client.post(
        "/api/v1/objects", params={"type": "model"}, headers=api.auth(pending)
    ) as r:
        assert r.status == 403


async def test_bucket_quota_is_403_with_a_clear_message(make_api) -> None:  # type: ignore[no-untyped-def]
    api = await make_api(quota_buckets=2)
    bob = api.tokens.add(f"bob{uuid.uuid4().hex[:6]}")
    await api.bucket(bob)
    await api.bucket(bob)
    async with api.client.post(
        "/api/v1/objects", params={"type": "model"}, headers=api.auth(bob)
    ) as r:
        assert r.status == 403
        assert "quota" in (await r.json())["error"]


async def test_private_bucket_is_404_for_strangers_and_anonymous(api: Api) -> None:
    alice, eve = api.tokens.add("alice"), api.tokens.add("eve")
    bucket = await api.bucket(alice, name="secret")
    for headers in (api.auth(eve), {}):
        async with api.client.get(f"/api/v1/objects/{bucket['id']}", headers=headers) as r:
            assert r.status == 404


async def test_malformed_and_unknown_bucket_ids_are_404(api: Api) -> None:
    alice = api.tokens.add("alice")
    for raw in ("not-a-uuid", str(uuid.uuid4()), "1234"):
        async with api.client.get(f"/api/v1/objects/{raw}", headers=api.auth(alice)) as r:
            assert r.status == 404


async def test_public_bucket_is_readable_by_anyone(api: Api) -> None:
    alice = api.tokens.add("alice")
    bucket = await api.bucket(alice, public="true")
    async with api.client.get(f"/api/v1/objects/{bucket['id']}") as r:
        assert r.status == 200


async def test_list_buckets_shows_only_readable_ones_and_filters(api: Api) -> None:
    carol, dave = api.tokens.add("carol"), api.tokens.add("dave", groups=("lab",))
    mine = await api.bucket(carol, name="mine")
    shared = await api.bucket(carol, name="shared")
    public = await api.bucket(carol, name="open", public="1")
    async with api.client.put(
        f"/api/v1/objects/{shared['id']}?permissions",
        headers=api.auth(carol),
        json={"granteeType": "GROUP", "grantee": "lab", "permission": "READ"},
    ) as r:
        assert r.status == 200
    async with api.client.get("/api/v1/objects", headers=api.auth(dave)) as r:
        ids = {b["id"] for b in await r.json()}
    assert shared["id"] in ids and public["id"] in ids and mine["id"] not in ids
    async with api.client.get(
        "/api/v1/objects", params={"owner": "carol", "name": "mine"}, headers=api.auth(carol)
    ) as r:
        assert [b["id"] for b in await r.json()] == [mine["id"]]


async def test_list_buckets_pages_with_a_token_header(api: Api) -> None:
    owner = f"pager{uuid.uuid4().hex[:6]}"
    token = api.tokens.add(owner)
    made = [(await api.bucket(token))["id"] for _ in range(5)]
    seen: list[str] = []
    params = {"owner": owner, "limit": "2"}
    while True:
        async with api.client.get("/api/v1/objects", params=params, headers=api.auth(token)) as r:
            assert r.status == 200
            seen += [b["id"] for b in await r.json()]
            nxt = r.headers.get("X-Next-Continuation-Token")
        if not nxt:
            break
        params["continuationToken"] = nxt
    assert seen == made


async def test_patch_changes_name_type_metadata_and_update_time(api: Api) -> None:
    alice = api.tokens.add("alice")
    bucket = await api.bucket(alice, name="old")
    async with api.client.patch(
        f"/api/v1/objects/{bucket['id']}",
        headers=api.auth(alice),
        data='{"name": "new-name", "type": "model", "metadata": {"k": "v"}}',
    ) as r:
        assert r.status == 200
        body = await r.json()
    assert (body["name"], body["type"], body["metadata"]) == ("new-name", "model", {"k": "v"})
    async with api.client.patch(
        f"/api/v1/objects/{bucket['id']}", headers=api.auth(alice), json={"owner": "mallory"}
    ) as r:
        assert r.status == 422


async def test_permissions_round_trip_in_sage_shape(api: Api) -> None:
    alice = api.tokens.add("alice")
    bucket = await api.bucket(alice)
    url = f"/api/v1/objects/{bucket['id']}"
    grant = {"granteeType": "USER", "grantee": "otheruser", "permission": "READ"}
    async with api.client.put(
        url + "?permissions",
        headers=api.auth(alice),
        data='{"granteeType": "USER", "grantee": "otheruser", "permission": "READ"}',
    ) as r:
        assert r.status == 200
        assert await r.json() == grant
    async with api.client.get(url + "?permissions=True", headers=api.auth(alice)) as r:
        grants = await r.json()
    assert {"granteeType": "USER", "grantee": "alice", "permission": "FULL_CONTROL"} in grants
    assert grant in grants
    assert all(set(g) == {"granteeType", "grantee", "permission"} for g in grants)
    async with api.client.delete(
        url,
        params=[
            ("permissions", ""),
            ("grantee", "USER:otheruser:READ"),
            ("grantee", "GROUP:nobody"),
        ],
        headers=api.auth(alice),
    ) as r:
        assert r.status == 200
        assert await r.json() == {"deleted": ["USER:otheruser:READ"]}


async def test_owner_full_control_cannot_be_removed_and_all_users_read_only(api: Api) -> None:
    alice = api.tokens.add("alice")
    url = f"/api/v1/objects/{(await api.bucket(alice))['id']}"
    async with api.client.delete(
        url + "?permissions&grantee=USER:alice", headers=api.auth(alice)
    ) as r:
        assert r.status == 400
    async with api.client.put(
        url + "?permissions",
        headers=api.auth(alice),
        json={"granteeType": "GROUP", "grantee": "AllUsers", "permission": "WRITE"},
    ) as r:
        assert r.status == 400
    async with api.client.put(
        url + "?permissions",
        headers=api.auth(alice),
        json={"granteeType": "USER", "grantee": "bob", "permission": "OWN"},
    ) as r:
        assert r.status == 422


async def test_empty_key_delete_is_400_and_bucket_survives(api: Api) -> None:
    alice = api.tokens.add("alice")
    bucket = await api.bucket(alice)
    async with api.client.delete(f"/api/v1/objects/{bucket['id']}/", headers=api.auth(alice)) as r:
        assert r.status == 400
        assert "error" in await r.json()
    async with api.client.get(f"/api/v1/objects/{bucket['id']}", headers=api.auth(alice)) as r:
        assert r.status == 200


async def test_delete_bucket_removes_objects_grants_and_blobs(api: Api) -> None:
    alice = api.tokens.add("alice")
    bucket = await api.bucket(alice)
    for i in range(3):
        async with await api.put(alice, bucket["id"], f"d/f{i}", b"x" * i) as r:
            assert r.status == 200
    async with api.client.delete(f"/api/v1/objects/{bucket['id']}", headers=api.auth(alice)) as r:
        assert r.status == 200
        assert await r.json() == {"deleted": [bucket["id"]]}
    async with api.client.get(f"/api/v1/objects/{bucket['id']}", headers=api.auth(alice)) as r:
        assert r.status == 404
    assert not [k for k in api.objects.blobs if k.startswith(bucket["id"])]
    pool = api.storage.store.pool
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM grants WHERE bucket_id = $1", uuid.UUID(bucket["id"])
        )
        == 0
    )


async def test_interrupted_bucket_delete_hides_the_bucket_and_resumes(api: Api) -> None:
    alice, eve = api.tokens.add("alice"), api.tokens.add("eve")
    bucket = await api.bucket(alice)
    for i in range(3):
        async with await api.put(alice, bucket["id"], f"f{i}", b"x") as r:
            assert r.status == 200
    url = f"/api/v1/objects/{bucket['id']}"
    api.objects.down = True
    async with api.client.delete(url, headers=api.auth(alice)) as r:
        assert r.status == 503
    api.objects.down = False
    async with api.client.get(url, headers=api.auth(alice)) as r:
        assert r.status == 404  # half deleted: gone for everyone
    async with api.client.delete(url, headers=api.auth(eve)) as r:
        assert r.status == 404  # only its owner (or an admin) may finish the delete
    async with api.client.delete(url, headers=api.auth(alice)) as r:
        assert r.status == 200
    assert not [k for k in api.objects.blobs if k.startswith(bucket["id"])]
    assert await api.storage.store.deleting_owner(uuid.UUID(bucket["id"])) is None


async def test_sweeper_finishes_deletes_garbage_and_abandoned_uploads(make_api) -> None:  # type: ignore[no-untyped-def]
    from sage_storage.service_upkeep import sweep_once

    api = await make_api(part_size=5 * 1024 * 1024, stale_upload_seconds=0)
    alice = api.tokens.add("alice")
    doomed, kept = await api.bucket(alice), await api.bucket(alice)
    for bucket in (doomed, kept):
        async with await api.put(alice, bucket["id"], "f", b"x") as r:
            assert r.status == 200
    store = api.storage.store
    await store.mark_deleting(uuid.UUID(doomed["id"]))
    orphan = f"{kept['id']}/orphan"
    api.objects.blobs[orphan] = api.objects.blobs[next(iter(api.objects.blobs))]
    await store.pool.execute("INSERT INTO garbage (blob) VALUES ($1)", orphan)
    abandoned = f"{kept['id']}/abandoned"
    upload_id = await api.objects.create_multipart(abandoned, content_type="x", metadata={})
    await store.begin_upload(abandoned, uuid.UUID(kept["id"]))
    await store.set_upload_id(abandoned, upload_id)

    assert await sweep_once(api.storage)
    assert await store.deleting_owner(uuid.UUID(doomed["id"])) is None
    assert [k for k in api.objects.blobs if k.startswith(doomed["id"])] == []
    assert orphan not in api.objects.blobs and await store.garbage(10) == []
    assert upload_id not in api.objects.uploads and await store.upload(abandoned) is None
    async with api.client.get(f"/api/v1/objects/{kept['id']}/f", headers=api.auth(alice)) as r:
        assert await r.read() == b"x"
