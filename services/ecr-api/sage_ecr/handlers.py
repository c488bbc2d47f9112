"""HTTP in and out: parse the request, call one use case, answer JSON. Nothing else happens here."""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import BaseModel

from sage_common import db
from sage_common.auth import Principal, principal
from sage_common.errors import BadRequest, PayloadTooLarge
from sage_common.openapi import describe
from sage_common.web import POOL, json_response, json_text_response

from . import service, service_meta, service_pipeline, service_submit, spec
from . import service_logs as build_logs
from .cache import cached_listing
from .models import (
    BuildNumber,
    FrozenQuery,
    ListQuery,
    NamespaceCreate,
    PermissionChange,
    RegistryAccessQuery,
    RepositoryQuery,
    ReviewDecision,
    SubmitFields,
)
from .service import Ecr
from .specload import load_document
from .state import BUILD_LOGS, ECR, META_FILES

M = TypeVar("M", bound=BaseModel)


def _ecr(request: web.Request) -> Ecr:
    return request.app[ECR]


_HOST_RE = re.compile(r"^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")


def _text(body: str | bytes) -> web.Response:
    return json_text_response(body)


def _base_url(request: web.Request) -> str:
    """This API's address as the caller reached it: the configured `public_url`, else the
    gateway's X-Forwarded-Proto/-Host, else the request's own scheme and Host."""
    configured = _ecr(request).public_url
    if configured:
        return configured.rstrip("/")
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip()
    if proto not in ("http", "https"):
        proto = request.scheme
    if not _HOST_RE.match(host):
        host = request.host if _HOST_RE.match(request.host) else "localhost"
    return f"{proto}://{host}"


def _path(request: web.Request) -> tuple[str, str, str]:
    m = request.match_info
    return m["namespace"], m["name"], m["version"]


def _caller(request: web.Request) -> tuple[Ecr, Principal | None]:
    """What every use case takes first: the context and the caller."""
    return _ecr(request), principal(request)


def _on_app(request: web.Request) -> tuple[Ecr, Principal | None, str, str, str]:
    """The use case's first arguments for the app version the path names."""
    return *_caller(request), *_path(request)


def _too_large(ecr: Ecr) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the app description is larger than {ecr.max_body_bytes // 1024} KiB: "
        "send the sage.yaml alone (files such as ecr-meta/ are read from the repository)"
    )


async def _spec_body(request: web.Request) -> tuple[Any, dict[str, str]]:
    """The description, and the form fields sent beside it (multipart: the part `file`)."""
    ecr = _ecr(request)
    if request.content_length is not None and request.content_length > ecr.max_body_bytes:
        raise _too_large(ecr)
    fields: dict[str, str] = {}
    try:
        if request.content_type == "multipart/form-data":
            form = await request.post()
            part = form.get("file")
            if not isinstance(part, web.FileField):
                raise BadRequest("send the app description as the multipart part 'file'")
            body = part.file.read()
            json_part = part.content_type == "application/json" or part.filename.endswith(".json")
            kind = "application/json" if json_part else "application/yaml"
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
        else:
            body, kind = await request.read(), request.content_type
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(ecr) from None
    except (ValueError, RuntimeError, HttpProcessingError):  # aiohttp's form parser: no
        # boundary, a part whose headers do not parse, a bad `_charset_`
        raise BadRequest("the multipart form is malformed (its boundary or a part)") from None
    document = load_document(body, kind, max_depth=ecr.spec_max_depth, max_nodes=ecr.spec_max_nodes)
    return document, fields


async def _json_body(request: web.Request, model: type[M]) -> M:
    """A JSON body whatever its declared type: SAGE's `curl -d '{...}'` examples send form data."""
    try:
        data = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body is not valid JSON") from None
    return model.model_validate(data)


async def app_schema(request: web.Request) -> web.Response:
    """The JSON Schema of the app description (sage.yaml)."""
    return json_response(spec.json_schema())


@describe(request=spec.AppSpec, tags=["apps"])
async def submit(request: web.Request) -> web.Response:
    """Submit an app version (JSON or YAML body; namespace, url, branch may come as query or
    form fields, `force=true` replaces a version not frozen); it enters the pipeline, or waits
    as `registered` when the submitter is not approved yet."""
    data, form = await _spec_body(request)
    fields = SubmitFields.model_validate({**request.query, **form})
    given = fields.given()
    if "version" in request.match_info:
        given.update(zip(("namespace", "name", "version"), _path(request), strict=True))
    submission = service_submit.validate_spec(data, given)
    return _text(await service_submit.submit(*_caller(request), submission, force=fields.force))


@cached_listing
async def list_apps(request: web.Request) -> web.Response:
    """List the apps you may read: paged, filtered, searchable."""
    query = ListQuery.model_validate(dict(request.query))
    m = request.match_info
    return _text(
        await service.list_apps(*_caller(request), query, m.get("namespace"), m.get("name"))
    )


async def get_app(request: web.Request) -> web.Response:
    """One app version."""
    return _text(await service.get_app(*_on_app(request)))


async def delete_app(request: web.Request) -> web.Response:
    """Delete an app version (a frozen one: administrators only)."""
    return json_response(await service.delete_app(*_on_app(request)))


async def app_status(request: web.Request) -> web.Response:
    """Pipeline state and its history."""
    return json_response(await service_pipeline.status(*_on_app(request)))


def _wants_text(request: web.Request, query: build_logs.LogQuery) -> bool:
    """`?format=text`, or an Accept header naming text/plain and not JSON."""
    if query.format is not None:
        return query.format == "text"
    accept = request.headers.get("Accept", "")
    return "text/plain" in accept and "application/json" not in accept


async def app_logs(request: web.Request) -> web.Response:
    """The build log: JSON (where it is, its tail), or the text from `offset` (`?format=text`)."""
    query = build_logs.LogQuery.model_validate(dict(request.query))
    if not _wants_text(request, query):
        return json_response(await service_pipeline.logs(*_on_app(request)))
    return await _log_text(request, query.offset)


async def _log_text(
    request: web.Request, offset: int, build_number: int | None = None
) -> web.Response:
    ecr, who = _caller(request)
    logs = request.app[BUILD_LOGS]
    page = await build_logs.read_log(ecr, logs, who, *_path(request), offset, build_number)
    headers = {
        "X-Build-Complete": "true" if page.complete else "false",
        "X-Build-Number": str(page.build_number),
        "X-Log-Offset": str(page.offset),
        "X-Log-Next-Offset": str(page.next_offset),
        "X-Log-Size": str(page.size),
        "Cache-Control": "no-store",
    }
    if page.build_id:
        headers["X-Build-Id"] = page.build_id
    return web.Response(body=page.data, content_type="text/plain", charset="utf-8", headers=headers)


async def meta_file(request: web.Request) -> web.StreamResponse:
    """A file of the app's ecr-meta folder (icon, science image, science description)."""
    found = await service_meta.open_file(
        _ecr(request),
        request.app[META_FILES],
        principal(request),
        *_path(request),
        request.match_info["file"],
        request.headers.get("If-None-Match"),
    )
    headers = {
        "ETag": found.etag,
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
    }
    if found.stream is None:
        return web.Response(status=304, headers=headers)
    response = web.StreamResponse(headers={**headers, "Content-Type": found.file.content_type})
    response.content_length = found.file.size
    try:
        await response.prepare(request)
        async for chunk in found.stream.chunks():
            await response.write(chunk)
    finally:
        await found.stream.close()
    await response.write_eof()
    return response


async def app_profile(request: web.Request) -> web.Response:
    """The profiler's report."""
    return json_response(await service_pipeline.profile(*_on_app(request)))


@describe(request=ReviewDecision, tags=["review"])
async def review(request: web.Request) -> web.Response:
    """Approve or reject a version in review."""
    body = await _json_body(request, ReviewDecision)
    return _text(await service_pipeline.review(*_on_app(request), body))


async def get_build(request: web.Request) -> web.Response:
    """The current build (`result`: SUCCESS, FAILURE, or null while running; `url`: its address)."""
    return json_response(await service_pipeline.get_build(*_on_app(request), _base_url(request)))


async def build_console(request: web.Request) -> web.Response:
    """One build's log as text (what SAGE's portal opens as a build's `url` + `console`)."""
    query = build_logs.LogQuery.model_validate(dict(request.query))
    number = BuildNumber.model_validate({"build_number": request.match_info["build_number"]})
    return await _log_text(request, query.offset, number.build_number)


@describe(tags=["apps"])
async def set_frozen(request: web.Request) -> web.Response:
    """Freeze or unfreeze a version: `?frozen=true|false`, administrators only (as in SAGE)."""
    query = FrozenQuery.model_validate(dict(request.query))
    return json_response(await service.set_frozen(*_on_app(request), query.frozen))


async def sage_root(request: web.Request) -> web.Response:
    """What SAGE's ECR answers at its root."""
    return web.Response(text="SAGE Edge Code Repository", content_type="text/plain")


async def healthy(request: web.Request) -> web.Response:
    """SAGE's health check: `{"status": "ok"}` while the database answers (503 otherwise)."""
    await db.ping(request.app[POOL])
    return json_response({"status": "ok"})


async def rebuild(request: web.Request) -> web.Response:
    """Build the version again (new build id); not for frozen versions."""
    return json_response(await service_pipeline.rebuild(*_on_app(request)))


@cached_listing
async def list_namespaces(request: web.Request) -> web.Response:
    """Namespaces you may read."""
    return json_response(await service.list_namespaces(*_caller(request)))


@describe(request=NamespaceCreate, tags=["namespaces"])
async def create_namespace(request: web.Request) -> web.Response:
    """Claim a namespace."""
    body = await _json_body(request, NamespaceCreate)
    return json_response(await service.create_namespace(*_caller(request), body))


async def get_namespace(request: web.Request) -> web.Response:
    """A namespace and the repositories in it you may read."""
    ns = request.match_info["namespace"]
    return json_response(await service.get_namespace(*_caller(request), ns))


async def delete_namespace(request: web.Request) -> web.Response:
    """Delete an empty namespace."""
    ns = request.match_info["namespace"]
    return json_response(await service.delete_namespace(*_caller(request), ns))


@cached_listing
async def list_repositories(request: web.Request) -> web.Response:
    """Repositories you may read (SAGE's filters; `view=permissions` adds their grants)."""
    query = RepositoryQuery.model_validate(dict(request.query))
    ns = request.match_info.get("namespace")
    return json_response(await service.list_repositories(*_caller(request), query, ns))


async def get_repository(request: web.Request) -> web.Response:
    """A repository and its versions."""
    m = request.match_info
    return _text(await service.get_repository(*_caller(request), m["namespace"], m["name"]))


async def delete_repository(request: web.Request) -> web.Response:
    """Delete a repository with no versions."""
    m = request.match_info
    return json_response(
        await service.delete_repository(*_caller(request), m["namespace"], m["name"])
    )


async def get_permissions(request: web.Request) -> web.Response:
    """The access control list of a namespace or repository."""
    m = request.match_info
    return json_response(
        await service.get_permissions(*_caller(request), m["namespace"], m.get("name"))
    )


@describe(request=PermissionChange, tags=["permissions"])
async def change_permissions(request: web.Request) -> web.Response:
    """Add or delete grants."""
    body = await _json_body(request, PermissionChange)
    m = request.match_info
    return json_response(
        await service.change_permissions(*_caller(request), m["namespace"], m.get("name"), body)
    )


async def registry_access(request: web.Request) -> web.Response:
    """Registry actions a user may take on a repository (for the auth service)."""
    query = RegistryAccessQuery.model_validate(dict(request.query))
    return json_response(await service_pipeline.registry_access(*_caller(request), query))
