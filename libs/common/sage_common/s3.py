"""S3 errors as the services read them, whichever S3 server answers (MinIO, `rclone serve s3`).

Each service turns them into its own domain errors at its adapter; what an error *is* (its S3
code) is read here, once. Imported only by services that depend on `minio` themselves.
"""

from __future__ import annotations

import re

from minio.error import InvalidResponseError, S3Error

_CODE_RE = re.compile(r"<Code>([A-Za-z]+)</Code>")


def s3_code(exc: BaseException) -> str | None:
    """The S3 error code (`NoSuchKey`, ...), also where a server sends its XML error as text/xml
    (rclone does, and minio then raises `InvalidResponseError`); None for any other failure."""
    if isinstance(exc, S3Error):
        return exc.code
    if isinstance(exc, InvalidResponseError):
        return body_code(str(exc))
    return None


def body_code(body: str) -> str | None:
    """The `<Code>` of an S3 XML error body, or None when it has none."""
    match = _CODE_RE.search(body)
    return match.group(1) if match else None
