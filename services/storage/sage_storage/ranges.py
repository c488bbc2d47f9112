"""The HTTP `Range` header (RFC 9110), for one byte range: what to send of an object."""

from __future__ import annotations

import re

_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


class _Unsatisfiable:
    def __repr__(self) -> str:
        return "unsatisfiable"


unsatisfiable = _Unsatisfiable()


def parse_range(header: str | None, size: int) -> tuple[int, int] | _Unsatisfiable | None:
    """(offset, length) to send; None for the whole object (no header, or one we may ignore:
    malformed or several ranges); `unsatisfiable` for a range outside the object (416)."""
    match = _RANGE_RE.match(header or "")
    if match is None:
        return None
    first, last = match.groups()
    if first == "" and last == "":
        return None
    if first == "":
        suffix = int(last)
        if suffix == 0 or size == 0:
            return unsatisfiable
        start = max(0, size - suffix)
        return start, size - start
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if last != "" and int(last) < start:
        return None
    if start >= size:
        return unsatisfiable
    return start, end - start + 1
