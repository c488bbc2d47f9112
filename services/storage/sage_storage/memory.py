"""An in-memory `ObjectStore` for unit tests: same contract and errors as S3, no network.

`down = True` fails every call as an unreachable store does; `fail_part`, that part's upload.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from sage_common.errors import Unavailable

from .objectstore import BlobMissing, Buffer, UploadMissing

_ids = itertools.count(1)


@dataclass
class Blob:
    data: bytes
    content_type: str
    metadata: dict[str, str]


@dataclass
class _Upload:
    key: str
    content_type: str
    metadata: dict[str, str]
    parts: dict[int, bytes] = field(default_factory=dict)


class MemoryObjectStore:
    """`ObjectStore` on dicts."""

    def __init__(self, *, min_part: int = 0) -> None:
        self.blobs: dict[str, Blob] = {}
        self.uploads: dict[str, _Upload] = {}
        self.down = False
        self.fail_part: int | None = None
        self.min_part = min_part
        self.calls: list[str] = []

    def _check(self, what: str) -> None:
        self.calls.append(what)
        if self.down:
            raise Unavailable("the object store is unreachable, try again")

    async def ensure_bucket(self) -> None:
        self._check("ensure_bucket")

    async def put(
        self,
        key: str,
        data: Buffer,
        *,
        content_type: str,
        metadata: dict[str, str],
        sha256: str,
    ) -> None:
        self._check("put")
        self.blobs[key] = Blob(bytes(data), content_type, dict(metadata))

    async def create_multipart(
        self, key: str, *, content_type: str, metadata: dict[str, str]
    ) -> str:
        self._check("create_multipart")
        upload_id = f"upload-{next(_ids)}"
        self.uploads[upload_id] = _Upload(key, content_type, dict(metadata))
        return upload_id

    async def upload_part(self, key: str, upload_id: str, number: int, data: Buffer) -> str:
        self._check("upload_part")
        if number == self.fail_part:
            raise Unavailable("the object store is unreachable, try again")
        upload = self.uploads.get(upload_id)
        if upload is None or upload.key != key:
            raise UploadMissing(upload_id)
        upload.parts[number] = bytes(data)
        return f"etag-{number}"

    async def complete_multipart(
        self, key: str, upload_id: str, parts: list[tuple[int, str]]
    ) -> None:
        self._check("complete_multipart")
        upload = self.uploads.pop(upload_id, None)
        if upload is None:
            raise UploadMissing(upload_id)
        numbers = [n for n, _ in parts]
        assert numbers == sorted(upload.parts) == list(range(1, len(parts) + 1))
        for n in numbers[:-1]:
            assert len(upload.parts[n]) >= self.min_part, "part smaller than S3 allows"
        data = b"".join(upload.parts[n] for n in numbers)
        self.blobs[key] = Blob(data, upload.content_type, upload.metadata)

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        self._check("abort_multipart")
        self.uploads.pop(upload_id, None)

    async def open(
        self, key: str, offset: int = 0, length: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        self._check("open")
        blob = self.blobs.get(key)
        if blob is None:
            raise BlobMissing(key)
        end = len(blob.data) if length is None else offset + length
        data = blob.data[offset:end]

        async def chunks() -> AsyncGenerator[bytes, None]:
            for i in range(0, len(data), 65536):
                yield data[i : i + 65536]

        return chunks()

    async def delete(self, keys: list[str]) -> None:
        self._check("delete")
        for key in keys:
            self.blobs.pop(key, None)
