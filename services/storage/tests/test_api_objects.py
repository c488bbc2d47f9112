"""Object routes through HTTP with the in-memory object store: uploads, downloads, deletes."""

from __future__ import annotations

import base64
import hashlib
import os
import uuid

import aiohttp
from yarl import URL

from sage_storage.config import MiB

from .conftest import Api


def form(*files: tuple[str, bytes], field: str = "file") -> aiohttp.FormData:
    data = aiohttp.FormData()
    for name, content in files:
        data.add_field(field, content, filename=name, content_type="image/jpeg")
    return data


async def test_form_upload_to_bucket_root_answers_like_the_seed(api: Api) -> None:
    alice = api.tokens.add("alice")
    bucket = await api.bucket(alice)
    picture = os.urandom(300_000)
    async with api.client.put(
        f"/api/v1/objects/{bucket['id']}/",
        headers=api.auth(alice),
        data=form(("camera_picture1.jpg", picture)),
    ) as r:
        assert r.status == 200
        assert await r.json() == {"bucket-id": bucket["id"], "key": "/camera_picture1.jpg"}
    async with api.client.get(
        f"/api/v1/objects/{bucket['id']}/camera_picture1.jpg", headers=api.auth(alice)
    ) as r:
        assert r.status == 200
        assert await r.read() == picture
        assert r.headers["Content-Type"] == "image/jpeg"
        assert r.headers["Content-Length"] == str(len(picture))
        assert r.headers["ETag"] == f'"{hashlib.sha256(picture).hexdigest()}"'
        assert r.headers["Content-Disposition"].startswith('attachment; filename="camera_picture1')


async def test_every_file_part_is_stored_under_a_directory_key(api: Api) -> None:
    alice = api.tokens.add("alice")
    bucket = await api.bucket(alice)
    async with api.client.put(
        f"/api/v1/objects/{bucket['id']}/imgs/",
        headers=api.auth(alice),
        data=form(("a.jpg", b"A"), ("b.jpg", b"BB")),
    ) as r:
        assert r.status == 200
        body = await r.json()
    assert body["key"] == "/imgs/a.jpg" and body["keys"] == ["/imgs/a.jpg", "/imgs/b.jpg"]
    for name, content in (("a.jpg", b"A"), ("b.jpg", b"BB")):
        async with api.client.get(
            f"/api/v1/objects/{bucket['id']}/imgs/{name}", headers=api.auth(alice)
        ) as r:
            assert await r.read() == content


async def test_form_upload_to_a_full_key_renames_the_file(api: Api) -> None:
    alice = api.tokens.add("alice")
    bucket = await api.bucket(alice)
    async with api.client.put(
        f"/api/v1/objects/{bucket['id']}/x/renamed.bin",
        headers=api.auth(alice),
        data=form(("orig.jpg", b"data")),
    ) as r:
        assert await r.json() == {"bucket-id": bucket["id"], "key": "/x/renamed.bin"}


async def test_raw_body_upload_and_overwrite_replaces_the_blob(api: Api) -> None:
    alice = api.tokens.add("alice")
    bucket = await api.bucket(alice)
    async with await api.put(alice, bucket["id"], "model.bin", b"first") as r:
        assert await r.json() == {"bucket-id": bucket["id"], "key": "/model.bin"}
    async with await api.put(alice, bucket["id"], "model.bin", b"second!") as r:
        assert r.status == 200
    async with api.client.get(
        f"/api/v1/objects/{bucket['id']}/model.bin", headers=api.auth(alice)
    ) as r:
        assert await r.read() == b"second!"
    assert len([k for k in api.objects.blobs if k.startswith(bucket["id"])]) == 1


async def test_large_upload_goes_multipart_and_round_trips(api: Api) -> None:
    alice = api.tokens.add("alice")
    bucket = await api.bucket(alice)
    data = os.urandom(12 * MiB + 123)
    async with await api.put(alice, bucket["id"], "big", data) as r:
        assert r.status == 200, await r.text()
    assert "complete_multipart" in api.objects.calls
    async with api.client.get(f"/api/v1/objects/{bucket['id']}/big", headers=api.auth(alice)) as r:
        assert hashlib.sha256(await r.read()).digest() == hashlib.sha256(data).digest()


async def test_zero_byte_object_round_trips(api: Api) -> None:
    alice = api.tokens.add("alice")
    bucket = await api.bucket(alice)
    async with await api.put(alice, bucket["id"], "empty", b"") as r:
        assert r.status == 200
    async with api.client.get(
        f"/api/v1/objects/{bucket['id']}/empty", headers=api.auth(alice)
    ) as r:
        assert r.status == 200 and await r.read() == b""


async def test_wrong_content_md5_or_sha256_stores_nothing(api: Api) -> None:
    alice = api.tokens.add("alice")
    bucket = await api.bucket(alice)
    data = os.urandom(6 * MiB)
    wrong_md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    wrong_sha = hashlib.sha256(b"other").hexdigest()
    for headers in (
        {"Content-MD5": wrong_md5},
        {"X-Checksum-SHA256": wrong_sha},
        {"x-amz-checksum-sha256": base64.b64encode(bytes(32)).decode()},
    ):
        async with await api.put(alice, bucket["id"], "checked", data, headers) as r:
            assert r.status == 400
            assert "nothing was stored" in (await r.json())["error"]
    async with api.client.head(
        f"/api/v1/objects/{bucket['id']}/checked", headers=api.auth(alice)
    ) as r:
        assert r.status == 404
    assert not api.objects.uploads
    assert not [k for k in api.objects.blobs if k.startswith(bucket["id"])]
    good = {
        "Content-MD5": base64.b64encode(hashlib.md5(data).digest()).decode(),
        "X-Checksum-SHA256": hashlib.sha256(data).hexdigest(),
    }
    async with await api.put(alice, bucket["id"], "checked", data, good) as r:
        assert r.status == 200


async def test_malformed_checksum_header_is_400(api: Api) -> None:
    alice = api.tokens.add("alice")
    bucket = await api.bucket(alice)
    async with await api.put(alice, bucket["id"], "k", b"x", {"Content-MD5": "nope"}) as r:
        assert r.status == 400


async def test_bad_keys_are_400(api: Api) -> None:
    alice = api.tokens.add("alice")
    bucket = await api.bucket(alice)
    root = str(api.client.make_url(f"/api/v1/objects/{bucket['id']}/"))
    for key in (
        "a/../b",
        "a/%2E%2E/b",
        "a//b",
        "./a",
        "x" * 1025,
        "ctl%01char",
        "%E2%82%AC" * 342,
        "%2Fabs",
    ):
        # sent as written: clients such as yarl and curl would fold '..' away themselves
        url = URL(root + key, encoded=True)
        async with api.client.session.put(url, data=b"x", headers=api.auth(alice)) as r:
            assert r.status == 400, key
    async with await api.put(alice, bucket["id"], "%E2%82%AC" * 341, b"x") as r:
        assert r.status == 200  # 1,023 bytes of UTF-8


async def test_raw_upload_to_a_directory_key_is_400(api: Api) -> None:
    alice = api.tokens.add("alice")
    bucket = await api.bucket(alice)
    async with await api.put(alice, bucket["id"], "dir/", b"x") as r:
        assert r.status == 400


async def test_body_over_the_limit_is_413_and_leaves_nothing(make_api) -> None:  # type: ignore[no-untyped-def]
    api = await make_api(part_size=5 * MiB, max_upload_bytes=7 * MiB)
    alice = api.tokens.add("alice")
    bucket = await api.bucket(alice)
    async with await api.put(alice, bucket["id"], "big", os.urandom(8 * MiB)) as r:
        assert r.status == 413

    async def stream():  # no Content-Length: the limit is found while streaming
        for _ in range(8):
            yield os.urandom(MiB)

    async with api.client.put(
        f"/api/v1/objects/{bucket['id']}/big2", data=stream(), headers=api.auth(alice)
    ) as r:
        assert r.status == 413
    assert not api.objects.uploads
    assert not [k for k in api.objects.blobs if k.startswith(bucket["id"])]
    assert await api.storage.store.uploads_of(uuid.UUID(bucket["id"])) == []


async def test_byte_quota_is_413_with_a_clear_message(make_api) -> None:  # type: ignore[no-untyped-def]
    api = await make_api(part_size=5 * MiB, quota_bytes=1000)
    owner = f"q{uuid.uuid4().hex[:6]}"
    alice = api.tokens.add(owner)
    bucket = await api.bucket(alice)
    async with await api.put(alice, bucket["id"], "a", b"x" * 600) as r:
        assert r.status == 200
    async with await api.put(alice, bucket["id"], "b", b"x" * 600) as r:
        assert r.status == 413
        assert "quota" in (await r.json())["error"]
    async with await api.put(alice, bucket["id"], "a", b"x" * 900) as r:
        assert r.status == 200  # replacing counts the difference


async def test_object_store_down_is_503_with_retry_after_and_no_row(api: Api) -> None:
    alice = api.tokens.add("alice")
    bucket = await api.bucket(alice)
    api.objects.down = True
    async with await api.put(alice, bucket["id"], "k", b"data") as r:
        assert r.status == 503
        assert r.headers["Retry-After"]
    api.objects.down = False
    async with api.client.head(f"/api/v1/objects/{bucket['id']}/k", headers=api.auth(alice)) as r:
        assert r.status == 404


async def test_failure_mid_multipart_aborts_the_upload(api: Api) -> None:
    alice = api.tokens.add("alice")
    bucket = await api.bucket(alice)
    api.objects.fail_part = 2
    async with await api.put(alice, bucket["id"], "k", os.urandom(16 * MiB)) as r:
        assert r.status == 503
    assert not api.objects.uploads
    assert not [k for k in api.objects.blobs if k.startswith(bucket["id"])]


async def test_range_requests(api: Api) -> None:
    alice = api.tokens.add("alice")
    bucket = await api.bucket(alice)
    data = bytes(range(256)) * 4
    async with await api.put(alice, bucket["id"], "r", data) as r:
        assert r.status == 200
    url = f"/api/v1/objects/{bucket['id']}/r"
    for header, status, body in (
        ("bytes=0-9", 206, data[:10]),
        ("bytes=1000-", 206, data[1000:]),
        ("bytes=-5", 206, data[-5:]),
        ("bytes=0-1,5-6", 200, data),
    ):
        async with api.client.get(url, headers={**api.auth(alice), "Range": header}) as r:
            assert r.status == status, header
            assert await r.read() == body
    async with api.client.get(url, headers={**api.auth(alice), "Range": "bytes=2000-"}) as r:
        assert r.status == 416
        assert r.headers["Content-Range"] == "bytes */1024"


async def test_head_gives_headers_without_body(api: Api) -> None:
    alice = api.tokens.add("alice")
    bucket = await api.bucket(alice)
    async with await api.put(
        alice, bucket["id"], "h.txt", b"hello", {"Content-Type": "text/plain"}
    ) as r:
        assert r.status == 200
    async with api.client.head(
        f"/api/v1/objects/{bucket['id']}/h.txt", headers=api.auth(alice)
    ) as r:
        assert r.status == 200
        assert r.headers["Content-Length"] == "5"
        assert r.headers["Content-Type"] == "text/plain"
        assert r.headers["X-Checksum-SHA256"] == hashlib.sha256(b"hello").hexdigest()


async def test_delete_object_then_it_is_404(api: Api) -> None:
    alice = api.tokens.add("alice")
    bucket = await api.bucket(alice)
    async with await api.put(alice, bucket["id"], "d/x", b"x") as r:
        assert r.status == 200
    url = f"/api/v1/objects/{bucket['id']}/d/x"
    async with api.client.delete(url, headers=api.auth(alice)) as r:
        assert r.status == 200
        assert await r.json() == {"deleted": ["/d/x"]}
    async with api.client.delete(url, headers=api.auth(alice)) as r:
        assert r.status == 404
    assert not [k for k in api.objects.blobs if k.startswith(bucket["id"])]


async def test_replaced_blob_outlives_the_replace_by_the_grace_period(make_api) -> None:  # type: ignore[no-untyped-def]
    from sage_storage.service import Storage
    from sage_storage.service_upkeep import sweep_once

    api = await make_api(garbage_grace_seconds=300)
    alice = api.tokens.add("alice")
    bucket = await api.bucket(alice)
    for body in (b"old", b"new"):
        async with await api.put(alice, bucket["id"], "k", body) as r:
            assert r.status == 200
    mine = lambda: [k for k in api.objects.blobs if k.startswith(bucket["id"])]  # noqa: E731
    assert len(mine()) == 2  # a download of the old one may still be reading it
    assert await sweep_once(api.storage)
    assert len(mine()) == 2
    ctx = api.storage
    later = Storage(
        ctx.store, ctx.objects, ctx.config.model_copy(update={"garbage_grace_seconds": 0})
    )
    assert await sweep_once(later)
    assert len(mine()) == 1


async def test_concurrent_uploads_to_one_key_leave_one_object_and_one_blob(api: Api) -> None:
    import asyncio

    alice = api.tokens.add("alice")
    bucket = await api.bucket(alice)
    bodies = [bytes([i]) * (1000 + i) for i in range(8)]

    async def put(body: bytes) -> int:
        async with await api.put(alice, bucket["id"], "same", body) as r:
            return r.status

    assert await asyncio.gather(*(put(b) for b in bodies)) == [200] * 8
    async with api.client.get(f"/api/v1/objects/{bucket['id']}/same", headers=api.auth(alice)) as r:
        stored = await r.read()
    assert stored in bodies
    assert len([k for k in api.objects.blobs if k.startswith(bucket["id"])]) == 1
    row = await api.storage.store.pool.fetchrow(
        "SELECT object_count, bytes_used FROM buckets WHERE id = $1", uuid.UUID(bucket["id"])
    )
    assert (row["object_count"], row["bytes_used"]) == (1, len(stored))


async def test_content_type_that_cannot_be_sent_back_is_400(api: Api) -> None:
    alice = api.tokens.add("alice")
    bucket = await api.bucket(alice)
    form = aiohttp.FormData()
    form.add_field("file", b"x", filename="a.bin", content_type="image/\u00e9\u00e9")
    async with api.client.put(
        f"/api/v1/objects/{bucket['id']}/", data=form, headers=api.auth(alice)
    ) as r:
        assert r.status == 400
        assert "Content-Type" in (await r.json())["error"]


async def test_every_raw_upload_answer_leaves_no_upload_record(make_api) -> None:  # type: ignore[no-untyped-def]
    """A raw upload is recorded as begun by its bucket's lookup (one query): stored, refused by
    permission, by its key, its size or its type, none leaves that record behind."""
    api = await make_api(part_size=5 * MiB, max_upload_bytes=MiB)
    alice, bob = api.tokens.add("alice"), api.tokens.add("bob")
    bucket = await api.bucket(alice, public="true")
    cases = [
        (alice, "ok.bin", b"x", {}, 200),
        (bob, "theirs.bin", b"x", {}, 403),  # may read, may not write
        (alice, "dir/", b"x", {}, 400),
        (alice, "big.bin", os.urandom(2 * MiB), {}, 413),
        (alice, "typed.bin", b"x", {"Content-Type": "text/\u00e9"}, 400),
        (alice, "sum.bin", b"x", {"Content-MD5": "not a digest"}, 400),
    ]
    for token, key, data, headers, status in cases:
        async with await api.put(token, bucket["id"], key, data, headers) as r:
            assert r.status == status, (key, await r.text())
    async with await api.put(alice, str(uuid.uuid4()), "gone.bin", b"x") as r:
        assert r.status == 404
    count = await api.storage.store.pool.fetchval("SELECT count(*) FROM uploads")
    assert count == 0
    assert list(api.objects.blobs) == [
        (await api.storage.store.blobs_of(uuid.UUID(bucket["id"]), 10))[0][1]
    ]
