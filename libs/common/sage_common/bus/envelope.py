"""Reading envelopes off the wire, and the headers that say why a message was moved aside."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from ..events import CloudEvent

ERROR_LIMIT = 2000
_DROPPED_HEADERS = ("x-death", "x-first-death-", "x-last-death-")


class Skip(Exception):  # noqa: N818 - a control-flow signal, named as the bus API says
    """This consumer already recorded the event: the delivery is a duplicate and is acked as is."""


class InvalidEnvelope(ValueError):
    """The message body is not a CloudEvents envelope this bus can handle."""


def parse_envelope(body: bytes) -> CloudEvent:
    """The envelope in `body`; raise InvalidEnvelope when it is not one (its id must be a UUID)."""
    try:
        event = CloudEvent.model_validate_json(body)
        uuid.UUID(event.id)
    except (ValidationError, ValueError) as exc:
        raise InvalidEnvelope(str(exc)) from None
    return event


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:ERROR_LIMIT]


def attempts(headers: Mapping[str, Any] | None) -> int:
    """How many times handling this message has failed so far (its `x-attempts` header)."""
    try:
        return int((headers or {}).get("x-attempts", 0))
    except (TypeError, ValueError):
        return 0


def failure_headers(
    headers: Mapping[str, Any] | None, *, error: str, consumer: str, routing_key: str
) -> dict[str, Any]:
    """`headers` with one more failure recorded; the broker's own x-death bookkeeping dropped."""
    now = datetime.now(UTC).isoformat()
    out = {k: v for k, v in (headers or {}).items() if not k.startswith(_DROPPED_HEADERS)}
    out["x-attempts"] = attempts(headers) + 1
    out["x-error"] = error[:ERROR_LIMIT]
    out["x-last-failure"] = now
    out["x-consumer"] = consumer
    out.setdefault("x-first-failure", now)
    out.setdefault("x-routing-key", routing_key)
    return out


def lag_seconds(event: CloudEvent) -> float:
    """Seconds since the event was made (0 for a clock running behind)."""
    created = event.time if event.time.tzinfo else event.time.replace(tzinfo=UTC)
    return max(0.0, (datetime.now(UTC) - created).total_seconds())
