"""The upload pipeline on its own: parts, hashing, limits, and what a failure leaves behind."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator

import pytest

from sage_common.errors import BadRequest, PayloadTooLarge, Unavailable
from sage_storage.config import MiB
from sage_storage.memory import MemoryObjectStore
from sage_storage.uploads import Checksums, Limit, write_blob


async def chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def _write(store: MemoryObjectStore, data: bytes, **kw: object) -> object:
    seen: list[str] = []

    async def remember(upload_id: str) -> None:
        seen.append(upload_id)

    args = {
        "part_size": 5 * MiB,
        "limit": Limit(1 << 40, "too big"),
        "content_type": "application/octet-stream",
        "metadata": {},
        "expect": Checksums(),
        "on_multipart": remember,
        **kw,
    }
    return await write_blob(store, "b/blob", chunks(data), **args)  # type: ignore[arg-type]


async def test_small_body_is_one_put_with_its_sha256() -> None:
    store = MemoryObjectStore(min_part=5 * MiB)
    written = await _write(store, b"hello")
    assert store.blobs["b/blob"].data == b"hello"
    assert written.sha256 == hashlib.sha256(b"hello").hexdigest()  # type: ignore[attr-defined]
    assert "create_multipart" not in store.calls


async def test_large_body_is_sent_in_parts_no_bigger_than_needed() -> None:
    store = MemoryObjectStore(min_part=5 * MiB)
    data = os.urandom(11 * MiB + 5)
    sizes: list[int] = []
    real = store.upload_part

    async def spy(key: str, upload_id: str, number: int, part: bytes) -> str:
        sizes.append(len(part))
        return await real(key, upload_id, number, part)

    store.upload_part = spy  # type: ignore[method-assign]
    await _write(store, data)
    assert store.blobs["b/blob"].data == data
    assert len(sizes) == 3 and max(sizes) < 5 * MiB + 64 * 1024


async def test_exact_multiple_of_the_part_size_completes() -> None:
    store = MemoryObjectStore(min_part=5 * MiB)
    data = os.urandom(10 * MiB)
    await _write(store, data)
    assert store.blobs["b/blob"].data == data


async def test_checksum_mismatch_completes_nothing() -> None:
    store = MemoryObjectStore(min_part=5 * MiB)
    with pytest.raises(BadRequest):
        await _write(store, os.urandom(6 * MiB), expect=Checksums(sha256=bytes(32)))
    assert "complete_multipart" not in store.calls and "b/blob" not in store.blobs


async def test_md5_is_computed_only_when_the_client_sent_one() -> None:
    store = MemoryObjectStore()
    data = b"abc"
    written = await _write(store, data, expect=Checksums(md5=hashlib.md5(data).digest()))
    assert written.md5 == hashlib.md5(data).hexdigest()  # type: ignore[attr-defined]
    assert (await _write(store, data)).md5 is None  # type: ignore[attr-defined]


async def test_limit_stops_the_stream_before_it_is_all_read() -> None:
    store = MemoryObjectStore(min_part=5 * MiB)
    with pytest.raises(PayloadTooLarge, match="quota"):
        await _write(store, os.urandom(3 * MiB), limit=Limit(MiB, "quota exceeded"))
    assert "b/blob" not in store.blobs


async def test_failing_part_raises_and_the_upload_id_was_reported_for_cleanup() -> None:
    store = MemoryObjectStore(min_part=5 * MiB)
    store.fail_part = 1
    with pytest.raises(Unavailable):
        await _write(store, os.urandom(12 * MiB))
    assert "complete_multipart" not in store.calls
    assert len(store.uploads) == 1  # open until the caller aborts it by the id it was given
