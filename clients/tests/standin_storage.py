"""The object store part of the stand-in server: buckets, grants, objects, SAGE listings."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from aiohttp import web

from .standin import NOW, STATE, USER, problem


def _bucket(request: web.Request) -> dict[str, Any]:
    found = request.app[STATE].buckets.get(request.match_info["bucket"])
    if found is None:
        raise web.HTTPNotFound(
            text=json.dumps({"error": "bucket not found", "detail": "bucket not found"}),
            content_type="application/problem+json",
        )
    return found


async def create_bucket(request: web.Request) -> web.Response:
    state = request.app[STATE]
    bid = str(uuid.uuid4())
    bucket = {
        "id": bid,
        "name": request.query.get("name", ""),
        "owner": request[USER],
        "type": request.query["type"],
        "time_created": NOW,
        "time_last_updated": NOW,
        "metadata": {},
    }
    state.buckets[bid] = bucket
    state.grants[bid] = [
        {"granteeType": "USER", "grantee": request[USER], "permission": "FULL_CONTROL"}
    ]
    state.objects[bid] = {}
    return web.json_response(bucket)


async def list_buckets(request: web.Request) -> web.Response:
    return web.json_response(list(request.app[STATE].buckets.values()))


async def bucket_get(request: web.Request) -> web.Response:
    bucket = _bucket(request)
    if "permissions" in request.query:
        return web.json_response(request.app[STATE].grants[bucket["id"]])
    return web.json_response(bucket)


async def bucket_put(request: web.Request) -> web.Response:
    bucket = _bucket(request)
    grant = await request.json()
    request.app[STATE].grants[bucket["id"]].append(grant)
    return web.json_response(grant)


async def bucket_patch(request: web.Request) -> web.Response:
    bucket = _bucket(request)
    bucket.update(await request.json())
    return web.json_response(bucket)


async def bucket_delete(request: web.Request) -> web.Response:
    bucket = _bucket(request)
    state = request.app[STATE]
    if "permissions" in request.query:
        target = request.query["grantee"]
        kept = [
            g
            for g in state.grants[bucket["id"]]
            if not f"{g['granteeType']}:{g['grantee']}:{g['permission']}".startswith(target)
        ]
        state.grants[bucket["id"]] = kept
        return web.json_response({"deleted": [target]})
    del state.buckets[bucket["id"]]
    return web.json_response({"deleted": [bucket["id"]]})


async def object_put(request: web.Request) -> web.Response:
    bucket = _bucket(request)
    state = request.app[STATE]
    key = request.match_info["key"]
    if request.content_type.startswith("multipart/"):
        form = await request.post()
        part = form["file"]
        data = part.file.read()  # type: ignore[union-attr]
        if not key or key.endswith("/"):
            key += part.filename  # type: ignore[union-attr]
    else:
        data = await request.read()
        expected = request.headers.get("X-Checksum-SHA256")
        if expected and expected != hashlib.sha256(data).hexdigest():
            return problem(400, "the body does not match X-Checksum-SHA256")
    if state.fail_uploads:
        state.fail_uploads -= 1
        return problem(503, "storage is restarting", **{"Retry-After": "0"})
    state.objects[bucket["id"]][key] = data
    return web.json_response({"bucket-id": bucket["id"], "key": "/" + key})


def _listing(request: web.Request, bucket_id: str, prefix: str) -> web.Response:
    objects = request.app[STATE].objects[bucket_id]
    recursive = request.query.get("recursive", "").lower() in ("", "true") and (
        "recursive" in request.query
    )
    entries: list[tuple[str, bool]] = []
    seen: set[str] = set()
    for key in sorted(objects):
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix) :]
        if not recursive and "/" in rest:
            folder = rest.split("/", 1)[0] + "/"
            if folder not in seen:
                seen.add(folder)
                entries.append((folder, True))
        else:
            entries.append((rest, False))
    start = int(request.query.get("ContinuationToken", "p0")[1:])
    limit = int(request.query.get("limit", "1000"))
    page = entries[start : start + limit]
    truncated = start + limit < len(entries)
    body: dict[str, Any] = {
        "Name": bucket_id,
        "Prefix": prefix,
        "Contents": [
            {"Key": k, "Size": len(objects[prefix + k]), "LastModified": NOW, "ETag": '"x"'}
            for k, folder in page
            if not folder
        ],
        "CommonPrefixes": [{"Prefix": k} for k, folder in page if folder],
        "IsTruncated": truncated,
    }
    if truncated:
        body["NextContinuationToken"] = f"p{start + limit}"
    return web.json_response(body)


async def object_get(request: web.Request) -> web.StreamResponse:
    bucket = _bucket(request)
    state = request.app[STATE]
    key = request.match_info["key"]
    if not key or key.endswith("/"):
        return _listing(request, bucket["id"], key)
    data = state.objects[bucket["id"]].get(key)
    if data is None:
        return problem(404, "object not found")
    start, status = 0, 200
    if request.headers.get("Range", "").startswith("bytes="):
        start, status = int(request.headers["Range"][6:].rstrip("-")), 206
    response = web.StreamResponse(
        status=status,
        headers={
            "Content-Length": str(len(data) - start),
            "Content-Disposition": f'attachment; filename="{key.rsplit("/", 1)[-1]}"',
            "Content-Type": "application/octet-stream",
        },
    )
    await response.prepare(request)
    if state.cut_downloads:
        state.cut_downloads -= 1
        await response.write(data[start : start + (len(data) - start) // 2])
        request.transport.close()  # type: ignore[union-attr]
        return response
    await response.write(data[start:])
    await response.write_eof()
    return response


async def object_delete(request: web.Request) -> web.Response:
    bucket = _bucket(request)
    key = request.match_info["key"]
    if not key:
        return problem(400, "an empty key names no object")
    if request.app[STATE].objects[bucket["id"]].pop(key, None) is None:
        return problem(404, "object not found")
    return web.json_response({"deleted": ["/" + key]})


def storage_routes() -> list[web.RouteDef]:
    return [
        web.post("/api/v1/objects", create_bucket),
        web.get("/api/v1/objects", list_buckets),
        web.get("/api/v1/objects/{bucket}", bucket_get),
        web.put("/api/v1/objects/{bucket}", bucket_put),
        web.patch("/api/v1/objects/{bucket}", bucket_patch),
        web.delete("/api/v1/objects/{bucket}", bucket_delete),
        web.put("/api/v1/objects/{bucket}/{key:.*}", object_put),
        web.get("/api/v1/objects/{bucket}/{key:.*}", object_get),
        web.delete("/api/v1/objects/{bucket}/{key:.*}", object_delete),
    ]
