"""Object keys as the API takes them: rules that keep keys portable and listings unambiguous.

A key is stored without its leading `/` and answered with it (`/dir/name.jpg`, as SAGE clients
expect). At most 1,024 UTF-8 bytes; no empty, `.` or `..` segments; no NUL or control characters.
"""

from __future__ import annotations

import unicodedata

from sage_common.errors import BadRequest

MAX_KEY_BYTES = 1024


def _check_segments(path: str, what: str) -> None:
    if len(path.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise BadRequest(f"the {what} is longer than {MAX_KEY_BYTES} bytes of UTF-8")
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in path):
        raise BadRequest(f"the {what} holds a control character")
    for segment in path.split("/"):
        if segment == "":
            raise BadRequest(f"the {what} has an empty segment ('//' or a leading '/')")
        if segment in (".", ".."):
            raise BadRequest(f"the {what} has a '{segment}' segment")


def object_key(path: str) -> str:
    """A key naming one object (no trailing `/`); 400 when it breaks a rule."""
    if path == "" or path.endswith("/"):
        raise BadRequest("the key names a directory; name the object")
    _check_segments(path, "key")
    return path


def prefix(path: str) -> str:
    """A listing prefix: empty (the bucket's root) or ending in `/`."""
    if path == "":
        return ""
    if not path.endswith("/"):
        raise BadRequest("a listing path ends in '/'")
    _check_segments(path[:-1], "prefix")
    return path


def upload_key(path: str, filename: str | None) -> str:
    """The key for an upload to `path`: a path ending in `/` (or empty) gets the file's name."""
    if path == "" or path.endswith("/"):
        name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
        if not name:
            raise BadRequest("the key ends in '/' and the file part has no filename")
        path += name
    return object_key(path)


def shown(key: str) -> str:
    """The key as answered to clients: with its leading `/`."""
    return "/" + key
