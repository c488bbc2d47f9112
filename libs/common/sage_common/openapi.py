"""An OpenAPI 3.1 document built from the route table and the pydantic models handlers declare.

A handler declares its models with `@describe(request=..., response=...)`; its docstring's first line
is the summary. Undeclared handlers still appear, with their path and method.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

F = TypeVar("F", bound=Callable[..., Any])
_PARAM_RE = re.compile(r"\{([^}:]+)(:[^}]*)?\}")
# aiohttp's own default for a `{name}` without a regex: one non-empty segment
_DEFAULT_SEGMENT = "[^{}/]+"


def describe(
    *,
    request: type[BaseModel] | None = None,
    response: type[BaseModel] | None = None,
    status: int = 200,
    tags: list[str] | None = None,
) -> Callable[[F], F]:
    def mark(fn: F) -> F:
        fn.__openapi__ = {"request": request, "response": response, "status": status, "tags": tags}  # type: ignore[attr-defined]
        return fn

    return mark


def _raw_path(route: web.AbstractRoute) -> str:
    info = route.resource.get_info() if route.resource else {}
    return str(info.get("path") or info.get("formatter") or "")


def _unique(used: set[str], name: str) -> str:
    """`name`, or `name_2`, `name_3`... when a handler serves several paths (ids must differ)."""
    candidate, n = name, 1
    while candidate in used:
        n += 1
        candidate = f"{name}_{n}"
    used.add(candidate)
    return candidate


def _content(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, Any]:
    """A JSON body of `model`; its schema, and those it refers to, go into `schemas`."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas[model.__name__] = schema
    schemas.update(schema.pop("$defs", {}))
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}


def build_document(app: web.Application, title: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}
    routes = [(route, _raw_path(route)) for route in app.router.routes()]
    known = {(route.method, raw) for route, raw in routes}
    used: set[str] = set()
    for route, raw in routes:
        if route.method in ("HEAD", "*") or not raw:
            continue
        if raw.endswith("/") and raw != "/" and (route.method, raw.rstrip("/")) in known:
            continue  # the trailing-slash alias of a documented route (SAGE clients use both)
        path = _PARAM_RE.sub(r"{\1}", raw)
        handler = route.handler
        meta = getattr(handler, "__openapi__", {})
        doc = (handler.__doc__ or "").strip().splitlines()
        op: dict[str, Any] = {
            "summary": doc[0] if doc else handler.__name__.replace("_", " "),
            "operationId": _unique(used, f"{route.method.lower()}_{handler.__name__}"),
            "parameters": [
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": f"^(?:{pattern})$"},
                }
                for name, pattern in _path_patterns(route, raw).items()
            ],
            "responses": {"default": {"description": "problem+json error"}},
        }
        if meta.get("tags"):
            op["tags"] = meta["tags"]
        if meta.get("request") is not None:
            op["requestBody"] = {"required": True, "content": _content(meta["request"], schemas)}
        if meta.get("response") is not None:
            ok = {"description": "OK", "content": _content(meta["response"], schemas)}
            op["responses"][str(meta.get("status", 200))] = ok
        else:
            op["responses"]["200"] = {"description": "OK"}
        paths.setdefault(path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1"},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "sage": {"type": "apiKey", "in": "header", "name": "Authorization"}
            },
        },
        "security": [{"sage": []}],
    }


def _path_patterns(route: web.AbstractRoute, raw: str) -> dict[str, str]:
    """Each path parameter's regex, as the router matches it, so a fuzzer sends what can arrive."""
    patterns = {m.group(1): _DEFAULT_SEGMENT for m in _PARAM_RE.finditer(raw)}
    info = route.resource.get_info() if route.resource else {}
    compiled = info.get("pattern")
    if isinstance(compiled, re.Pattern):
        for name in patterns:
            group = re.search(
                rf"\(\?P<{re.escape(name)}>((?:[^()]|\([^()]*\))*)\)", compiled.pattern
            )
            if group:
                patterns[name] = group.group(1)
    return patterns


async def openapi_handler(request: web.Request) -> web.Response:
    """This service's OpenAPI document."""
    from .web import SERVICE, json_response

    return json_response(build_document(request.app, f"SAGE {request.app[SERVICE]}"))
