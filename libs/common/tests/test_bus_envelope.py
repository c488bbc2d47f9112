"""Reading envelopes and recording failures in headers: pure functions, no broker."""

from __future__ import annotations

import pytest

from sage_common.bus import InvalidEnvelope, parse_envelope
from sage_common.bus.envelope import ERROR_LIMIT, attempts, failure_headers
from sage_common.events import CloudEvent


def test_envelope_round_trips_and_junk_is_refused() -> None:
    event = CloudEvent(source="test", type="org.sagecontinuum.ecr.build.done.v1", data={"a": 1})

    assert parse_envelope(event.model_dump_json().encode()) == event
    for junk in (
        b"",
        b"{not json",
        b"[]",
        b'{"source": "x"}',
        b'{"id": "7", "source": "x", "type": "t"}',
    ):
        with pytest.raises(InvalidEnvelope):
            parse_envelope(junk)


def test_failure_headers_count_attempts_and_keep_the_first_failure() -> None:
    first = failure_headers(None, error="boom", consumer="c", routing_key="build.done")
    second = failure_headers(
        {**first, "x-death": [{"count": 1}], "trace": "kept"},
        error="x" * (ERROR_LIMIT + 10),
        consumer="c",
        routing_key="c",
    )

    assert first["x-attempts"] == 1 and second["x-attempts"] == 2
    assert second["x-first-failure"] == first["x-first-failure"]
    assert second["x-routing-key"] == "build.done"  # the original key, not the retry route
    assert len(second["x-error"]) == ERROR_LIMIT
    assert "x-death" not in second and second["trace"] == "kept"
    assert attempts({"x-attempts": "garbage"}) == 0
