"""Domain errors and the one middleware that renders every error as RFC 9457 problem+json.

Bodies also carry `"error": <detail>`, because SAGE clients look for that member.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import ValidationError

log = logging.getLogger(__name__)

PROBLEM_TYPE = "application/problem+json"


class ProblemError(Exception):
    """An error with an HTTP status that is safe to show to the caller."""

    status = 500
    title = "Internal Server Error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors
        self.headers = headers or {}


class BadRequest(ProblemError):
    status, title = 400, "Bad Request"


class Unauthorized(ProblemError):
    status, title = 401, "Unauthorized"

    def __init__(self, detail: str | None = None, **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": 'sage realm="sage"'})
        super().__init__(detail, **kw)


class Forbidden(ProblemError):
    status, title = 403, "Forbidden"


class NotFound(ProblemError):
    status, title = 404, "Not Found"


class Conflict(ProblemError):
    status, title = 409, "Conflict"


class PayloadTooLarge(ProblemError):
    status, title = 413, "Payload Too Large"


class UnsupportedMediaType(ProblemError):
    status, title = 415, "Unsupported Media Type"


class Unprocessable(ProblemError):
    status, title = 422, "Unprocessable Content"


class Unavailable(ProblemError):
    status, title = 503, "Service Unavailable"

    def __init__(self, detail: str | None = None, *, retry_after: int = 5, **kw: Any) -> None:
        kw.setdefault("headers", {"Retry-After": str(retry_after)})
        super().__init__(detail, **kw)


def validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """Every field problem with its path, without echoing the (possibly secret) input."""
    return [
        {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_input=False)
    ]


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "error": detail,
    }
    if errors is not None:
        body["errors"] = errors
    # Bytes, so that aiohttp adds no charset parameter: the type is exactly PROBLEM_TYPE.
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type=PROBLEM_TYPE,
        headers=headers,
    )


# A dependency down or overloaded: answered 503, for the caller to try again.
_UNAVAILABLE = (
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InterfaceError,
    ConnectionError,
    TimeoutError,
)


NUL_MESSAGE = "text may not contain the NUL character (\\u0000)"
# Postgres refusing a value the caller sent: the caller's mistake, answered 422 with what is wrong,
# wherever a model let it through (a path or query parameter, a field without a limit).
_REFUSED_DATA: tuple[tuple[type[Exception], str], ...] = (
    (asyncpg.exceptions.CharacterNotInRepertoireError, NUL_MESSAGE),
    (asyncpg.exceptions.UntranslatableCharacterError, NUL_MESSAGE),
    (asyncpg.exceptions.StringDataRightTruncationError, "a value is longer than its field allows"),
    (asyncpg.exceptions.NumericValueOutOfRangeError, "a number is out of its field's range"),
    (asyncpg.exceptions.DatetimeFieldOverflowError, "a date or time is out of range"),
)


def refused_data_detail(exc: BaseException) -> str | None:
    """What is wrong with the input Postgres refused, or None when `exc` is not such a refusal."""
    # asyncpg's own check of an integer argument against its column's type, before sending it
    if type(exc) is asyncpg.exceptions.DataError and "value out of int" in str(exc):
        return "a number is out of its field's range"
    return next((detail for kind, detail in _REFUSED_DATA if isinstance(exc, kind)), None)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every exception into problem+json; log unexpected ones, leak nothing about them."""
    try:
        return await handler(request)
    except ProblemError as exc:
        error = exc
    except ValidationError as exc:
        error = Unprocessable("the request is not valid", errors=validation_errors(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        detail = exc.reason
        if exc.status == 413:
            detail = "the request body is larger than this endpoint accepts"
        return problem_response(exc.status, exc.reason, detail, headers=headers)
    except Exception as exc:  # noqa: BLE001 - the one place that catches everything
        refused = refused_data_detail(exc)
        if refused is not None:
            log.info("input refused by the database: %s", type(exc).__name__)
            error = Unprocessable(refused)
        elif isinstance(exc, _UNAVAILABLE):
            log.warning("dependency unavailable: %s", type(exc).__name__)
            error = Unavailable("a dependency is unavailable, try again")
        else:
            log.exception("unhandled error on %s %s", request.method, request.path)
            error = ProblemError()
    return problem_response(
        error.status, error.title, error.detail, errors=error.errors, headers=error.headers
    )
