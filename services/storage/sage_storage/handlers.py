"""HTTP in and out for buckets and their permissions; objects are in handlers_objects.py.

Every success is 200, bucket creation included: SAGE clients take any other status as a failure.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from sage_common.auth import principal
from sage_common.errors import BadRequest
from sage_common.openapi import describe
from sage_common.web import json_response, refuse_nul

from . import service, service_upkeep
from .models import CreateBucket, Grant, UpdateBucket
from .state import STORAGE

_FALSE = {"false", "0", "no", "off"}


def flag(request: web.Request, name: str) -> bool:
    """A present-or-absent query flag: `?name`, `?name=True`, `?name=true` count; `=false` not."""
    return name in request.query and request.query[name].strip().lower() not in _FALSE


def int_query(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"{name} is a whole number") from None


async def json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object, whatever Content-Type says (`curl -d` sends a form type)."""
    raw = await request.read()
    try:
        data = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        raise BadRequest("the body is a JSON object")
    refuse_nul(data)
    return data


@describe(request=CreateBucket, tags=["buckets"])
async def create_bucket(request: web.Request) -> web.Response:
    """Create a bucket (`?type=&name=&public=` or a JSON body); answers the bucket."""
    if request.can_read_body and request.content_type not in ("", "application/octet-stream"):
        data = await json_object(request)
    else:
        data = {k: request.query[k] for k in ("name", "type", "public") if k in request.query}
    if "public" in data and isinstance(data["public"], str):
        data["public"] = data["public"].strip().lower() not in _FALSE
    bucket = await service.create_bucket(
        request.app[STORAGE], principal(request), CreateBucket(**data)
    )
    return json_response(bucket.json())


@describe(tags=["buckets"])
async def list_buckets(request: web.Request) -> web.Response:
    """The buckets the caller may read (`?owner=`, `?name=`, `?limit=`, `?continuationToken=`)."""
    token = request.query.get("continuationToken") or request.query.get("ContinuationToken")
    buckets, next_token = await service.list_buckets(
        request.app[STORAGE],
        principal(request),
        owner=request.query.get("owner") or None,
        name=request.query.get("name") or None,
        limit=int_query(request, "limit"),
        token=token,
    )
    headers = {"X-Next-Continuation-Token": next_token} if next_token else None
    return json_response([b.json() for b in buckets], headers=headers)


@describe(tags=["buckets"])
async def show_bucket(request: web.Request) -> web.Response:
    """The bucket; with `?permissions`, its grants."""
    ctx, who, raw_id = request.app[STORAGE], principal(request), request.match_info["bucket"]
    if flag(request, "permissions"):
        return json_response(await service.list_grants(ctx, who, raw_id))
    return json_response((await service.bucket_for(ctx, who, raw_id, "READ")).json())


@describe(request=UpdateBucket, tags=["buckets"])
async def update_bucket(request: web.Request) -> web.Response:
    """Change the name, type or user metadata of a bucket (FULL_CONTROL)."""
    body = UpdateBucket.model_validate(await json_object(request))
    bucket = await service.update_bucket(
        request.app[STORAGE], principal(request), request.match_info["bucket"], body
    )
    return json_response(bucket.json())


@describe(request=Grant, response=Grant, tags=["permissions"])
async def add_grant(request: web.Request) -> web.Response:
    """`PUT ?permissions` with `{granteeType, grantee, permission}`: add a grant."""
    if not flag(request, "permissions"):
        raise BadRequest("PUT on a bucket takes ?permissions; to upload, PUT to a key")
    grant = Grant.model_validate(await json_object(request))
    added = await service.add_grant(
        request.app[STORAGE], principal(request), request.match_info["bucket"], grant
    )
    return json_response(added.model_dump())


@describe(tags=["buckets", "permissions"])
async def delete_bucket(request: web.Request) -> web.Response:
    """Delete the bucket and all in it; with `?permissions&grantee=TYPE:NAME[:PERM]`, grants.

    Any `permissions` (even `=false`) or `grantee` in the query makes it a grant deletion, which
    never deletes the bucket: a misspelt flag must not turn "remove a grant" into "delete all".
    """
    ctx, who, raw_id = request.app[STORAGE], principal(request), request.match_info["bucket"]
    if "permissions" in request.query or "grantee" in request.query:
        deleted = await service.delete_grants(ctx, who, raw_id, request.query.getall("grantee", []))
        return json_response({"deleted": deleted})
    bucket_id = await service_upkeep.delete_bucket(ctx, who, raw_id)
    return json_response({"deleted": [str(bucket_id)]})
