"""JSON logs with a request id that follows a request across HTTP calls and bus events.

Every line has the credentials in URLs redacted (`https://***@host`), whatever field or
traceback they are in: git, the bus and database drivers print URLs as they were given.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import uuid

from pythonjsonlogger.json import JsonFormatter

from .redact import redact_urls

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class RedactingJsonFormatter(JsonFormatter):
    """JSON lines with `user:password@` (and tokens as user names) in URLs replaced by `***`."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_urls(super().format(record))


def setup_logging(service: str, level: str = "INFO") -> None:
    """Send JSON lines to stderr, each with the service name and the current request id."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        RedactingJsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            static_fields={"service": service},
        )
    )
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
