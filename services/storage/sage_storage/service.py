"""Use cases on buckets and their grants: who may do what, and the rules the API promises.

Objects are in service_objects.py, listings in service_listing.py, deletion in service_upkeep.py.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime

from sage_common.auth import Principal
from sage_common.errors import BadRequest, Forbidden, NotFound, Unauthorized

from . import access
from .access import ALL_USERS, Permission
from .config import Config
from .models import Bucket, CreateBucket, Grant, UpdateBucket
from .objectstore import ObjectStore
from .store import Store

_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")
MAX_PAGE = 1000  # buckets, or keys of a listing


@dataclass
class Storage:
    """What every use case works with: the metadata store, the object store and the settings."""

    store: Store
    objects: ObjectStore
    config: Config


def bucket_uuid(raw: str) -> uuid.UUID:
    """The bucket id in a URL; a malformed one is a 404 like any unknown bucket."""
    if not _UUID_RE.match(raw):
        raise NotFound("no such bucket")
    return uuid.UUID(raw)


async def bucket_for(
    ctx: Storage, who: Principal | None, raw_id: str, needed: Permission, begin: str | None = None
) -> Bucket:
    """The bucket, when the caller holds `needed` on it; 404/401/403 as access.check decides.
    `begin`: a blob recorded as an upload into it by the same query, whatever the answer."""
    username = who.username if who else None
    groups = access.grantee_groups(who)
    bucket = await ctx.store.bucket(bucket_uuid(raw_id), username, groups, begin)
    if bucket is None:
        raise NotFound("no such bucket")
    access.check(who, bucket.owner, bucket.granted, needed)
    return bucket


def new_blob(bucket_id: uuid.UUID) -> str:
    """The S3 key of a new upload's blob: `<bucket id>/<random id>`, never reused."""
    return f"{bucket_id}/{uuid.uuid4()}"


async def bucket_to_write(ctx: Storage, who: Principal | None, raw_id: str) -> tuple[Bucket, str]:
    """`bucket_for(..., "WRITE")` and a new blob to upload into it, recorded as begun by the same
    query (store.Store.bucket): one round trip fewer per upload. When refused, the record goes."""
    blob = new_blob(bucket_uuid(raw_id))
    try:
        return await bucket_for(ctx, who, raw_id, "WRITE", begin=blob), blob
    except BaseException:  # refused, or cancelled
        await forget_begun(ctx, blob)
        raise


async def forget_begun(ctx: Storage, blob: str) -> None:
    """Forget an upload that sent nothing to S3, even when cancelled; if that fails, the sweeper
    finds the record."""
    with contextlib.suppress(Exception):
        await asyncio.shield(ctx.store.forget_upload(blob))


async def create_bucket(ctx: Storage, who: Principal | None, body: CreateBucket) -> Bucket:
    if who is None:
        raise Unauthorized("creating a bucket needs a token: send 'Authorization: sage <token>'")
    if not (who.is_approved or who.is_admin):
        raise Forbidden("your account is not approved yet")
    return await ctx.store.create_bucket(who.username, body, ctx.config.quota_buckets)


async def list_buckets(
    ctx: Storage,
    who: Principal | None,
    *,
    owner: str | None,
    name: str | None,
    limit: int | None,
    token: str | None,
) -> tuple[list[Bucket], str | None]:
    """One page of the buckets the caller may read, and the token of the next (None at the end)."""
    size = page_size(limit)
    after = _decode_position(token) if token else None
    rows = await ctx.store.list_buckets(
        who.username if who else None,
        access.grantee_groups(who),
        admin=bool(who and who.is_admin),
        owner=owner,
        name=name,
        after=after,
        limit=size + 1,
    )
    if len(rows) <= size:
        return rows, None
    last = rows[size - 1]
    return rows[:size], encode_token(json.dumps([last.time_created.isoformat(), str(last.id)]))


def _decode_position(token: str) -> tuple[datetime, uuid.UUID]:
    try:
        when, bucket_id = json.loads(decode_token(token))
        return datetime.fromisoformat(when), uuid.UUID(bucket_id)
    except (ValueError, TypeError):
        raise BadRequest("the continuation token is not one this service gave") from None


def page_size(limit: int | None) -> int:
    """A page's size: `limit`, at most (and by default) MAX_PAGE."""
    size = MAX_PAGE if limit is None else limit
    if not 1 <= size <= MAX_PAGE:
        raise BadRequest(f"limit is between 1 and {MAX_PAGE}")
    return size


def encode_token(text: str) -> str:
    """A continuation token: `text` in unpadded URL-safe base64."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_token(token: str) -> str:
    """The text of an `encode_token`; ValueError when it is not one."""
    return base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True).decode()


async def update_bucket(
    ctx: Storage, who: Principal | None, raw_id: str, body: UpdateBucket
) -> Bucket:
    bucket = await bucket_for(ctx, who, raw_id, "FULL_CONTROL")
    if fields := body.model_dump(exclude_none=True):
        await ctx.store.update_bucket(bucket.id, fields)
    return await bucket_for(ctx, who, raw_id, "FULL_CONTROL")


async def list_grants(ctx: Storage, who: Principal | None, raw_id: str) -> list[dict[str, str]]:
    bucket = await bucket_for(ctx, who, raw_id, "READ_ACP")
    return await ctx.store.grants(bucket.id)


async def add_grant(ctx: Storage, who: Principal | None, raw_id: str, grant: Grant) -> Grant:
    bucket = await bucket_for(ctx, who, raw_id, "WRITE_ACP")
    if grant.granteeType == "USER" and grant.grantee == bucket.owner:
        raise BadRequest("the owner holds FULL_CONTROL; the owner's permissions do not change")
    if grant.grantee == ALL_USERS and (grant.granteeType != "GROUP" or grant.permission != "READ"):
        raise BadRequest("AllUsers may be granted READ only (GROUP:AllUsers:READ makes it public)")
    await ctx.store.add_grant(bucket.id, grant.granteeType, grant.grantee, grant.permission)
    return grant


def parse_grantee(spec: str) -> tuple[str, str, str | None]:
    """`TYPE:NAME[:PERMISSION]` (or a bare user name) as (type, name, permission or None)."""
    pieces = spec.split(":")
    if len(pieces) == 1:
        pieces = ["USER", *pieces]
    if len(pieces) > 3 or not pieces[1]:
        raise BadRequest(f"grantee {spec[:100]!r}: use TYPE:NAME or TYPE:NAME:PERMISSION")
    type_, name = pieces[0].upper(), pieces[1]
    perm = pieces[2].upper() if len(pieces) == 3 else None
    if type_ not in ("USER", "GROUP"):
        raise BadRequest(f"grantee type {pieces[0][:20]!r}: use USER or GROUP")
    if perm is not None and perm not in access.PERMISSIONS:
        known = ", ".join(access.PERMISSIONS)
        raise BadRequest(f"permission {pieces[2][:20]!r}: use one of {known}")
    return type_, name, perm


async def delete_grants(
    ctx: Storage, who: Principal | None, raw_id: str, specs: list[str]
) -> list[str]:
    """Remove the named grants; answer the specs that removed something."""
    bucket = await bucket_for(ctx, who, raw_id, "WRITE_ACP")
    if not specs:
        raise BadRequest("name what to remove: grantee=TYPE:NAME[:PERMISSION]")
    parsed = [parse_grantee(s) for s in specs]
    if any(type_ == "USER" and name == bucket.owner for type_, name, _ in parsed):
        raise BadRequest("the owner's FULL_CONTROL cannot be removed")
    deleted = []
    for type_, name, perm in parsed:
        if await ctx.store.delete_grants(bucket.id, type_, name, perm):
            deleted.append(":".join(p for p in (type_, name, perm) if p))
    return deleted
