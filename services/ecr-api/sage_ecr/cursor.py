"""Continuation tokens for listings: an opaque, encoded keyset position tied to its filters.

The token carries the sort key of the last row returned, so the next page starts right after it
whatever was added or removed meanwhile, and a fingerprint of the filters, so a token is refused
(400) when reused with other filters instead of silently paging through something else.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from sage_common.errors import BadRequest

_VERSION = 1


def fingerprint(filters: dict[str, Any]) -> str:
    """The mark of a listing's filters that its tokens carry; computed once per request."""
    canonical = json.dumps(filters, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode(position: list[str], mark: str) -> str:
    """A token for the page after `position` of the listing whose filters' `fingerprint` is
    `mark`."""
    raw = json.dumps({"v": _VERSION, "k": position, "f": mark}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(token: str, mark: str, width: int) -> list[str]:
    """The keyset position in `token`; 400 when it is malformed or was made for other filters
    (`mark`: the `fingerprint` of this request's)."""
    try:
        padded = token + "=" * (-len(token) % 4)
        body = json.loads(base64.urlsafe_b64decode(padded.encode()))
        position = body["k"]
        ok = (
            body.get("v") == _VERSION
            and isinstance(position, list)
            and len(position) == width
            and all(isinstance(p, str) for p in position)
        )
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise BadRequest("the continuation token is not valid")
    if body.get("f") != mark:
        raise BadRequest("the continuation token belongs to a listing with other filters")
    return list(position)
