"""The object store behind SAGE buckets, as the service sees it: blobs by key, multipart uploads.

`S3ObjectStore` (s3.py) is the real one; `MemoryObjectStore` (memory.py) is the fake for unit tests.
Both raise the same errors: `Unavailable` (503 with Retry-After) when the store cannot be reached,
`BlobMissing` and `UploadMissing` when what was named is not there.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol

Buffer = bytes | bytearray | memoryview


class BlobMissing(Exception):
    """The named blob does not exist in the object store."""


class UploadMissing(Exception):
    """The named multipart upload does not exist (completed, aborted, or never made)."""


class ObjectStore(Protocol):
    """What the service needs from S3; every method is safe to call from the event loop."""

    async def ensure_bucket(self) -> None:
        """Make the one S3 bucket that holds every SAGE bucket, if it is not there yet."""

    async def put(
        self,
        key: str,
        data: Buffer,
        *,
        content_type: str,
        metadata: dict[str, str],
        sha256: str,
    ) -> None:
        """Store a small blob in one request; `sha256` is its digest in hex."""

    async def create_multipart(
        self, key: str, *, content_type: str, metadata: dict[str, str]
    ) -> str:
        """Start a multipart upload; return its upload id."""

    async def upload_part(self, key: str, upload_id: str, number: int, data: Buffer) -> str:
        """Upload part `number` (from 1); return its ETag."""

    async def complete_multipart(
        self, key: str, upload_id: str, parts: list[tuple[int, str]]
    ) -> None:
        """Join the parts into the blob, which becomes visible at once and whole."""

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        """Drop an upload and its parts; an upload that is already gone is not an error."""

    async def open(
        self, key: str, offset: int = 0, length: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        """Stream a blob, or `length` bytes of it from `offset`; `BlobMissing` if absent. Its
        `aclose()` gives the connection back early."""

    async def delete(self, keys: list[str]) -> None:
        """Delete blobs; keys that are already gone are not an error."""
