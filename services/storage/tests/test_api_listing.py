"""Listings in the SAGE storage API's shape: prefixes, folders, recursion, pages."""

from __future__ import annotations

from typing import Any

from .conftest import Api

KEYS = ["a.txt", "b/1.txt", "b/2.txt", "b/c/3.txt", "b-sibling.txt", "d/4.txt", "z.txt"]


async def _filled(api: Api) -> tuple[str, str]:
    alice = api.tokens.add("alice")
    bucket = await api.bucket(alice)
    for key in KEYS:
        async with await api.put(alice, bucket["id"], key, key.encode()) as r:
            assert r.status == 200
    return alice, bucket["id"]


async def _list(api: Api, token: str, bucket_id: str, prefix: str = "", **query: str) -> Any:
    async with api.client.get(
        f"/api/v1/objects/{bucket_id}/{prefix}", params=query, headers=api.auth(token)
    ) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def test_root_listing_folds_folders_into_common_prefixes(api: Api) -> None:
    alice, bucket_id = await _filled(api)
    body = await _list(api, alice, bucket_id)
    assert body["Name"] == bucket_id and body["Prefix"] == "/"
    assert [c["Key"] for c in body["Contents"]] == ["a.txt", "b-sibling.txt", "z.txt"]
    assert body["CommonPrefixes"] == [{"Prefix": "b/"}, {"Prefix": "d/"}]
    assert body["IsTruncated"] is False and body["NextContinuationToken"] is None
    first = body["Contents"][0]
    assert set(first) >= {"Key", "Size", "LastModified", "ETag"} and first["Size"] == 5


async def test_prefix_listing_keys_are_relative_to_the_prefix(api: Api) -> None:
    alice, bucket_id = await _filled(api)
    body = await _list(api, alice, bucket_id, "b/")
    assert body["Prefix"] == "/b/"
    assert [c["Key"] for c in body["Contents"]] == ["1.txt", "2.txt"]
    assert body["CommonPrefixes"] == [{"Prefix": "c/"}]


async def test_recursive_listing_in_any_spelling_lists_every_key(api: Api) -> None:
    alice, bucket_id = await _filled(api)
    for flag in ("True", "true", ""):
        body = await _list(api, alice, bucket_id, recursive=flag)
        assert [c["Key"] for c in body["Contents"]] == sorted(KEYS)
        assert body["CommonPrefixes"] == []


async def test_pages_follow_tokens_that_never_repeat(api: Api) -> None:
    alice, bucket_id = await _filled(api)
    seen: list[str] = []
    sent: str | None = None
    query = {"limit": "2"}
    while True:
        body = await _list(api, alice, bucket_id, **query)
        seen += [c["Key"] for c in body["Contents"]] + [p["Prefix"] for p in body["CommonPrefixes"]]
        if not body["IsTruncated"]:
            assert body["NextContinuationToken"] is None
            break
        assert body["NextContinuationToken"] and body["NextContinuationToken"] != sent
        sent = query["ContinuationToken"] = body["NextContinuationToken"]
    assert seen == ["a.txt", "b-sibling.txt", "b/", "d/", "z.txt"]


async def test_listing_a_missing_prefix_is_empty_and_bad_input_is_400(api: Api) -> None:
    alice, bucket_id = await _filled(api)
    body = await _list(api, alice, bucket_id, "nothing/")
    assert body["Contents"] == [] and body["CommonPrefixes"] == []
    for query in ({"limit": "0"}, {"limit": "x"}, {"ContinuationToken": "%%%"}):
        async with api.client.get(
            f"/api/v1/objects/{bucket_id}/", params=query, headers=api.auth(alice)
        ) as r:
            assert r.status == 400, query


async def test_folders_fuller_than_a_batch_fold_into_one_entry_each_page_after_page(
    api: Api,
) -> None:
    import uuid

    alice, bucket_id = await _filled(api)
    # Object rows straight into the index (listings read only it): two folders of 1,500 keys.
    await api.storage.store.pool.execute(
        """INSERT INTO objects (bucket_id, key, blob, size, sha256, content_type)
           SELECT $1, f || '/' || lpad(i::text, 5, '0'), 'seed-' || f || i, 1, '', 'text/plain'
           FROM unnest(ARRAY['b/c', 'c', 'd']) AS f, generate_series(1, 1500) AS i""",
        uuid.UUID(bucket_id),
    )
    body = await _list(api, alice, bucket_id)
    assert [c["Key"] for c in body["Contents"]] == ["a.txt", "b-sibling.txt", "z.txt"]
    assert body["CommonPrefixes"] == [{"Prefix": "b/"}, {"Prefix": "c/"}, {"Prefix": "d/"}]
    inside = await _list(api, alice, bucket_id, "b/")
    assert [c["Key"] for c in inside["Contents"]] == ["1.txt", "2.txt"]
    assert inside["CommonPrefixes"] == [{"Prefix": "c/"}]

    seen: list[str] = []
    query: dict[str, str] = {"limit": "2"}
    while True:
        page = await _list(api, alice, bucket_id, **query)
        seen += [c["Key"] for c in page["Contents"]] + [p["Prefix"] for p in page["CommonPrefixes"]]
        if not page["IsTruncated"]:
            break
        query["ContinuationToken"] = page["NextContinuationToken"]
    assert sorted(seen) == ["a.txt", "b-sibling.txt", "b/", "c/", "d/", "z.txt"]


async def test_keys_after_a_folder_in_one_full_batch_are_listed_once(api: Api) -> None:
    import uuid

    alice, bucket_id = await _filled(api)
    # One batch of rows (1,000) ends on keys after a folder: a/..., b/..., d/4.txt, then e/
    # with 990 keys, then e1.txt..e3.txt and z.txt. The walk must not go back to the folder.
    await api.storage.store.pool.execute(
        """INSERT INTO objects (bucket_id, key, blob, size, sha256, content_type)
           SELECT $1, k, 'seed-' || k, 1, '', 'text/plain'
           FROM unnest(ARRAY(SELECT 'e/' || lpad(i::text, 5, '0') FROM generate_series(1, 990) i)
                       || ARRAY['e1.txt', 'e2.txt', 'e3.txt']) AS k""",
        uuid.UUID(bucket_id),
    )
    body = await _list(api, alice, bucket_id)
    keys = ["a.txt", "b-sibling.txt", "e1.txt", "e2.txt", "e3.txt", "z.txt"]
    assert [c["Key"] for c in body["Contents"]] == keys
    assert body["CommonPrefixes"] == [{"Prefix": "b/"}, {"Prefix": "d/"}, {"Prefix": "e/"}]
