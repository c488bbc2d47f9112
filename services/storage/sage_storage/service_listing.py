"""Listings of a bucket's keys under a prefix, in the SAGE storage API's (S3-like) shape.

Entries come from the Postgres object index in bytewise key order. Without `recursive`, keys with a
`/` after the prefix fold into one common prefix each, and the walk jumps past the whole folder; once
a batch of rows held keys inside folders, the rest of the page comes from a skip scan in the
database (one index probe per entry), so a page costs the same however full its folders are.
The continuation token names the last entry answered, so every next token differs from the last.
"""

from __future__ import annotations

from typing import Any

from sage_common.errors import BadRequest

from . import keys
from .models import Bucket, StoredObject, sage_time
from .service import Storage, decode_token, encode_token, page_size

_BATCH = 1000


def _past(entry: str) -> str:
    """The smallest key after `entry` and, for a folder `a/`, after everything inside it."""
    if entry.endswith("/"):
        return entry[:-1] + "0"  # '0' follows '/' bytewise
    return entry + "\x01"  # keys hold no control characters


def _upper(prefix: str) -> str | None:
    """The smallest string after every string that starts with `prefix`."""
    if not prefix:
        return None
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


async def list_objects(
    ctx: Storage,
    bucket: Bucket,
    path: str,
    *,
    recursive: bool,
    limit: int | None,
    token: str | None,
) -> dict[str, Any]:
    prefix = keys.prefix(path)
    size = page_size(limit)
    lower = prefix
    if token:
        try:
            lower = max(prefix, _past(decode_token(token)))
        except ValueError:
            raise BadRequest("the ContinuationToken is not one this service gave") from None
    upper = _upper(prefix)
    entries: list[StoredObject | str] = []
    truncated = False
    done = False
    skip_scan = False  # once a batch had folders to skip: one probe per entry from then on
    while not done and not truncated:
        if skip_scan:
            batch = size + 1 - len(entries)
            rows = await ctx.store.list_folded(bucket.id, lower, upper, len(prefix), batch)
        else:
            batch = _BATCH
            rows = await ctx.store.list_objects(bucket.id, lower, upper, batch)
        done = len(rows) < batch
        folder: str | None = None
        for row in rows:
            if folder is not None and row.key.startswith(folder):
                skip_scan = True
                continue
            rest = row.key[len(prefix) :]
            slash = -1 if recursive else rest.find("/")
            entry: StoredObject | str = row if slash < 0 else prefix + rest[: slash + 1]
            if len(entries) == size:
                truncated = True
                break
            entries.append(entry)
            if isinstance(entry, str):
                folder = entry
            # Past the last entry, and so past its folder's rest: never back to a folder
            # (rows after it in this batch were listed already).
            lower = _past(entry if isinstance(entry, str) else entry.key)
    contents = [
        {
            "Key": e.key[len(prefix) :],
            "Size": e.size,
            "LastModified": sage_time(e.last_modified),
            "ETag": f'"{e.sha256}"',
        }
        for e in entries
        if isinstance(e, StoredObject)
    ]
    folders = [{"Prefix": e[len(prefix) :]} for e in entries if isinstance(e, str)]
    next_token = None
    if truncated:  # a full page: never empty
        last = entries[-1]
        next_token = encode_token(last if isinstance(last, str) else last.key)
    return {
        "Name": str(bucket.id),
        "Prefix": keys.shown(prefix),
        "Delimiter": None if recursive else "/",
        "MaxKeys": size,
        "KeyCount": len(entries),
        "Contents": contents,
        "CommonPrefixes": folders,
        "IsTruncated": truncated,
        "ContinuationToken": token,
        "NextContinuationToken": next_token,
    }
