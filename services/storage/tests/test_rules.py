"""Pure rules: key validation, permission implication and answers, Range parsing, S3 errors."""

from __future__ import annotations

import pytest
import urllib3
from minio.error import InvalidResponseError

from sage_common.auth import Principal
from sage_common.errors import BadRequest, Forbidden, NotFound, Unauthorized, Unavailable
from sage_storage import access, keys
from sage_storage.objectstore import BlobMissing, UploadMissing
from sage_storage.ranges import parse_range, unsatisfiable
from sage_storage.s3 import translate
from sage_storage.service import parse_grantee


@pytest.mark.parametrize("path", ["a", "a/b.jpg", "ünïcödé/€", "x" * 1024, "a b/c d"])
def test_valid_object_keys_pass(path: str) -> None:
    assert keys.object_key(path) == path


@pytest.mark.parametrize(
    "path", ["", "a/", "/a", "a//b", "a/../b", "..", "a/.", "a\x00b", "a\nb", "x" * 1025, "€" * 342]
)
def test_invalid_object_keys_are_refused(path: str) -> None:
    with pytest.raises(BadRequest):
        keys.object_key(path)


def test_upload_key_appends_the_file_name_to_a_directory() -> None:
    assert keys.upload_key("", "pic.jpg") == "pic.jpg"
    assert keys.upload_key("a/b/", "C:\\Users\\me\\pic.jpg") == "a/b/pic.jpg"
    assert keys.upload_key("a/name", "pic.jpg") == "a/name"
    with pytest.raises(BadRequest):
        keys.upload_key("a/", None)
    with pytest.raises(BadRequest):
        keys.upload_key("a/", "..")


def test_prefixes_are_empty_or_end_in_a_slash() -> None:
    assert keys.prefix("") == "" and keys.prefix("a/b/") == "a/b/"
    for bad in ("a", "a//", "../"):
        with pytest.raises(BadRequest):
            keys.prefix(bad)


def test_permission_implications() -> None:
    assert access.effective(["FULL_CONTROL"]) == set(access.PERMISSIONS)
    assert access.effective(["WRITE"]) == {"WRITE", "READ"}
    assert access.effective(["WRITE_ACP"]) == {"WRITE_ACP", "READ_ACP"}
    assert access.effective(["READ"]) == {"READ"}


def _who(name: str = "u", **kw: object) -> Principal:
    return Principal(username=name, **kw)  # type: ignore[arg-type]


def test_check_answers_404_unless_readable_then_401_anonymous_403_otherwise() -> None:
    with pytest.raises(NotFound):
        access.check(_who(), "owner", [], "READ")
    with pytest.raises(NotFound):
        access.check(_who(), "owner", ["WRITE_ACP"], "FULL_CONTROL")
    access.check(_who(), "owner", ["READ_ACP"], "READ_ACP")
    with pytest.raises(NotFound):
        access.check(None, "owner", [], "READ")
    with pytest.raises(Unauthorized):
        access.check(None, "owner", ["READ"], "WRITE")
    with pytest.raises(Forbidden):
        access.check(_who(), "owner", ["READ"], "WRITE")
    access.check(_who(), "owner", ["WRITE"], "READ")
    access.check(_who("owner"), "owner", [], "FULL_CONTROL")
    access.check(_who(is_admin=True), "owner", [], "FULL_CONTROL")


def test_grantee_specs() -> None:
    assert parse_grantee("USER:bob") == ("USER", "bob", None)
    assert parse_grantee("group:lab:read") == ("GROUP", "lab", "READ")
    assert parse_grantee("bob") == ("USER", "bob", None)
    for bad in ("ROBOT:x", "USER:", "USER:x:OWN", "a:b:c:d"):
        with pytest.raises(BadRequest):
            parse_grantee(bad)


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("bytes=0-4", 10, (0, 5)),
        ("bytes=5-", 10, (5, 5)),
        ("bytes=-3", 10, (7, 3)),
        ("bytes=-30", 10, (0, 10)),
        ("bytes=8-100", 10, (8, 2)),
        ("bytes=10-", 10, unsatisfiable),
        ("bytes=0-", 0, unsatisfiable),
        ("bytes=0-1,3-4", 10, None),
        ("items=0-1", 10, None),
        ("bytes=5-2", 10, None),
    ],
)
def test_range_header(header: str | None, size: int, expected: object) -> None:
    assert parse_range(header, size) == expected


def test_s3_errors_become_domain_errors() -> None:
    def xml(code: str) -> InvalidResponseError:
        body = f'<?xml version="1.0"?><Error><Code>{code}</Code></Error>'
        return InvalidResponseError(404, "text/xml", body)

    assert isinstance(translate(xml("NoSuchKey"), "x"), BlobMissing)
    assert isinstance(translate(xml("NoSuchUpload"), "x"), UploadMissing)
    assert isinstance(translate(urllib3.exceptions.MaxRetryError(None, "/"), "x"), Unavailable)
    assert isinstance(translate(ConnectionRefusedError(), "x"), Unavailable)
    assert isinstance(translate(xml("AccessDenied"), "x"), Unavailable)
