"""Continuation tokens: opaque, round-trip, and refused when tampered with or reused elsewhere."""

from __future__ import annotations

import pytest

from sage_common.errors import BadRequest
from sage_ecr import cursor


def test_token_round_trips_its_position():
    token = cursor.encode(["ns", "app", "0001"], cursor.fingerprint({"q": "cars"}))
    assert cursor.decode(token, cursor.fingerprint({"q": "cars"}), 3) == ["ns", "app", "0001"]
    assert "ns" not in token  # opaque, not the raw key


def test_token_for_other_filters_is_refused():
    token = cursor.encode(["ns", "app", "0001"], cursor.fingerprint({"q": "cars"}))
    with pytest.raises(BadRequest, match="other filters"):
        cursor.decode(token, cursor.fingerprint({"q": "bikes"}), 3)


@pytest.mark.parametrize("token", ["", "N/A", "!!!", "eyJ2IjoxfQ", "bm90IGpzb24"])
def test_garbage_tokens_are_bad_requests(token):
    with pytest.raises(BadRequest, match="not valid"):
        cursor.decode(token, cursor.fingerprint({}), 3)
