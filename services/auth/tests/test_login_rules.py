"""Small rules of the login flow: PKCE challenges and usernames made from identity claims."""

from __future__ import annotations

import pytest

from sage_auth.models import valid_name
from sage_auth.service_login import pkce_challenge, username_from_claims


def test_pkce_challenge_matches_rfc7636_appendix_b():
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


@pytest.mark.parametrize(
    ("claims", "username"),
    [
        ({"preferred_username": "alice"}, "alice"),
        ({"preferred_username": "Alice.Smith", "email": "x@y"}, "alice.smith"),
        ({"email": "Bob_Jones@uni.edu"}, "bob_jones"),
        ({"preferred_username": "42", "email": "carol@uni.edu"}, "carol"),
        ({"preferred_username": "Dr. Ünïcode"}, "dr.-n-code"),
        ({"preferred_username": "-.9lives"}, "lives"),
        ({"preferred_username": "x" * 100}, "x" * 64),
        ({"preferred_username": "a"}, "user"),
        ({}, "user"),
        ({"preferred_username": None, "email": None}, "user"),
    ],
)
def test_username_from_claims(claims, username):
    assert username_from_claims(claims) == username
    assert valid_name(username)
