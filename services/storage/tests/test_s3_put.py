"""The small PUT's own pieces in s3.py: its SigV4 signer against minio's (which the rest of s3.py
uses: the same request signed both ways carries the same Authorization header), and the reading
of an answer. Sending on a real S3 server is in tests/integration/test_storage_*.py."""

from __future__ import annotations

import asyncio
import calendar
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
from minio.credentials.credentials import Credentials
from minio.signer import sign_v4_s3

from sage_storage.s3 import _answer, _Signer

WHEN = datetime(2026, 3, 1, 23, 59, 58, tzinfo=UTC)


@pytest.mark.parametrize(
    "content_type",
    ["application/octet-stream", "text/plain;  charset=utf-8", " image/png "],
)
def test_signature_is_minios(content_type: str) -> None:
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    payload = "a" * 64
    headers = {
        "Host": "127.0.0.1:9000",
        "Content-Type": content_type,
        "Content-Length": "65536",
        "x-amz-content-sha256": payload,
        "x-amz-meta-sage-key": "small/x%20y.bin",
    }
    path = "/sage-storage/0b4e/7f1c-9d"
    ours = _Signer("us-east-1").sign(
        "PUT", path, headers, payload, creds, now=calendar.timegm(WHEN.timetuple())
    )
    theirs = sign_v4_s3(
        method="PUT",
        url=urlsplit(f"http://127.0.0.1:9000{path}"),
        region="us-east-1",
        headers={**headers, "x-amz-date": "20260301T235958Z"},
        credentials=creds,
        content_sha256=payload,
        date=WHEN,
    )
    assert ours["x-amz-date"] == "20260301T235958Z"
    assert ours["Authorization"] == theirs["Authorization"]


def test_the_days_key_is_kept_and_replaced_the_next_day() -> None:
    creds = Credentials("AKID", "secret")
    signer = _Signer("us-east-1")
    day = calendar.timegm(WHEN.timetuple())
    first = signer.sign("PUT", "/b/k", {"Host": "h"}, "p", creds, now=day)
    again = signer.sign("PUT", "/b/k", {"Host": "h"}, "p", creds, now=day)
    later = signer.sign("PUT", "/b/k", {"Host": "h"}, "p", creds, now=day + 2)
    assert first == again
    assert "20260302/us-east-1/s3/aws4_request" in later["Authorization"]
    assert later["Authorization"] != first["Authorization"]


def test_anonymous_is_dated_not_signed() -> None:
    signed = _Signer("us-east-1").sign("PUT", "/b/k", {"Host": "h"}, "p", None, now=0)
    assert signed == {"Host": "h", "x-amz-date": "19700101T000000Z"}


async def _read(raw: bytes) -> tuple[int, bytes, bool]:
    reader = asyncio.StreamReader()
    reader.feed_data(raw)
    reader.feed_eof()
    return await _answer(reader)


async def test_answer_with_a_length_keeps_the_connection() -> None:
    raw = b"HTTP/1.1 200 OK\r\nETag: x\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n"
    assert await _read(raw) == (200, b"", True)


async def test_chunked_error_answer_and_connection_close() -> None:
    raw = (
        b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"6\r\n<Code>\r\n13;x=y\r\nAccessDenied</Code>\r\n0\r\nTrailer: t\r\n\r\n"
    )
    assert await _read(raw) == (403, b"<Code>AccessDenied</Code>", False)


async def test_http_1_0_closes_unless_kept_alive() -> None:
    assert (await _read(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"))[2] is False
    kept = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"
    assert (await _read(kept))[2] is True


async def test_a_cut_answer_is_an_eof_error() -> None:
    with pytest.raises(EOFError):
        await _read(b"")
    with pytest.raises(EOFError):
        await _read(b"HTTP/1.1 200 OK\r\nContent-Len")
    with pytest.raises(EOFError):  # IncompleteReadError is one
        await _read(b"HTTP/1.1 500 Oops\r\nContent-Length: 10\r\n\r\nshort")


async def test_answer_without_a_length_ends_with_the_connection() -> None:
    raw = b"HTTP/1.1 500 Oops\r\nContent-Type: text/xml\r\n\r\n<Code>InternalError</Code>"
    assert await _read(raw) == (500, b"<Code>InternalError</Code>", False)
