"""The one exception the client raises, and how a server's answer becomes one.

Every failure (an HTTP error, a refused connection, a timeout, an answer that is not JSON) is a
`SageError`, so a caller needs one `except` and the command line prints one clear line.
"""

from __future__ import annotations

import json
from typing import Any

RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})


class SageError(Exception):
    """A failed call: `status` is the HTTP status, or 0 when no HTTP answer came at all."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        body: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = body
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """True for answers a later attempt may not get: 5xx, and no answer at all."""
        return self.status == 0 or self.status in RETRYABLE_STATUSES

    def __str__(self) -> str:
        return f"{self.message} ({self.status})" if self.status else self.message


class SageConnectionError(SageError):
    """No HTTP answer: the connection was refused, broke, or timed out."""

    def __init__(self, message: str) -> None:
        super().__init__(0, message)


def _field_problems(errors: Any) -> str:
    if not isinstance(errors, list) or not errors:
        return ""
    parts = []
    for item in errors[:3]:
        if isinstance(item, dict):
            loc = ".".join(str(p) for p in item.get("loc", []) if p != "body")
            msg = str(item.get("msg") or item.get("message") or item)
            parts.append(f"{loc}: {msg}" if loc else msg)
        else:
            parts.append(str(item))
    more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(parts) + more


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: use our own back-off instead


def error_from_answer(
    status: int, reason: str | None, text: str, retry_after: str | None = None
) -> SageError:
    """Build the error for a non-2xx answer from its problem+json (`detail` or `error`) or text."""
    body: Any = None
    message = ""
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = None
    if isinstance(body, dict):
        message = str(body.get("detail") or body.get("error") or body.get("title") or "")
        problems = _field_problems(body.get("errors"))
        if problems:
            message = f"{message}: {problems}" if message else problems
    elif text and body is None:
        # Not JSON (a proxy's HTML page, plain text): say so, with its reason phrase.
        stripped = text.strip()
        if stripped and not stripped.startswith("<"):
            message = _one_line(stripped)
        else:
            message = f"{reason or 'error'} (the server's answer is not JSON)"
    if not message:
        message = reason or "request failed"
    return SageError(status, _one_line(message), body=body, retry_after=_retry_after(retry_after))
