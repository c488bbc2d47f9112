"""ID token checks of the OIDC client, against a stand-in provider that serves discovery and JWKS.

The whole flow runs against a real provider in tests/integration/test_auth_oidc.py; here we forge
the tokens a real provider would never send, to see each one refused.
"""

from __future__ import annotations

import time

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import rsa

from sage_auth.oidc import LoginFailed, OidcProvider

CLIENT = "sage"


class StandIn:
    """Discovery and a JWKS with whatever keys the test puts there."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.jwks_fetches = 0
        self.server: TestServer | None = None

    @property
    def issuer(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    async def discovery(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": self.issuer,
                "authorization_endpoint": self.issuer + "/auth",
                "token_endpoint": self.issuer + "/token",
                "jwks_uri": self.issuer + "/jwks",
            }
        )

    async def jwks(self, request: web.Request) -> web.Response:
        self.jwks_fetches += 1
        keys = []
        for kid, key in self.keys.items():
            jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return web.json_response({"keys": keys})

    def token(self, kid: str = "k1", alg: str = "RS256", **overrides: object) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": CLIENT,
            "sub": "u1",
            "iat": now,
            "exp": now + 60,
            "nonce": "n0nce",
            **overrides,
        }
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, self.keys[kid], algorithm=alg, headers={"kid": kid})


@pytest.fixture
async def standin():
    s = StandIn()
    s.keys["k1"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", s.discovery)
    app.router.add_get("/jwks", s.jwks)
    s.server = TestServer(app, host="127.0.0.1")
    await s.server.start_server()
    yield s
    await s.server.close()


@pytest.fixture
async def provider(standin):
    p = OidcProvider(standin.issuer, CLIENT, "secret", "http://127.0.0.1/cb")
    yield p
    await p.close()


async def test_a_good_id_token_gives_its_claims(standin, provider):
    claims = await provider.verify_id_token(standin.token(email="a@b"), "n0nce")
    assert claims["sub"] == "u1" and claims["email"] == "a@b"


@pytest.mark.parametrize(
    "overrides",
    [
        {"nonce": "other"},
        {"nonce": None},
        {"aud": "someone-else"},
        {"iss": "http://127.0.0.1:1"},
        {"exp": int(time.time()) - 3600},
        {"sub": None},
        {"aud": [CLIENT, "other"], "azp": "other"},
    ],
    ids=["nonce", "no-nonce", "audience", "issuer", "expired", "no-sub", "azp"],
)
async def test_wrong_id_tokens_are_refused(standin, provider, overrides):
    with pytest.raises(LoginFailed):
        await provider.verify_id_token(standin.token(**overrides), "n0nce")


async def test_unsigned_and_symmetric_tokens_are_refused(standin, provider):
    now = int(time.time())
    claims = {
        "iss": standin.issuer,
        "aud": CLIENT,
        "sub": "u",
        "iat": now,
        "exp": now + 60,
        "nonce": "n0nce",
    }
    for token in (
        jwt.encode(claims, None, algorithm="none"),
        jwt.encode(claims, "a-shared-secret-anyone-could-use-to-forge-tokens", algorithm="HS256"),
        "not.a.jwt",
    ):
        with pytest.raises(LoginFailed):
            await provider.verify_id_token(token, "n0nce")


async def test_a_token_signed_by_a_key_not_published_is_refused(standin, provider):
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    token = jwt.encode(
        {
            "iss": standin.issuer,
            "aud": CLIENT,
            "sub": "u",
            "iat": now,
            "exp": now + 60,
            "nonce": "n0nce",
        },
        stranger,
        algorithm="RS256",
        headers={"kid": "k1"},
    )
    with pytest.raises(LoginFailed):
        await provider.verify_id_token(token, "n0nce")


async def test_rotated_keys_are_fetched_again(standin, provider):
    await provider.verify_id_token(standin.token(), "n0nce")
    standin.keys["k2"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = await provider.verify_id_token(standin.token(kid="k2"), "n0nce")
    assert claims["sub"] == "u1" and standin.jwks_fetches == 2
    standin.keys["k9"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = standin.token(kid="k9")
    del standin.keys["k9"]  # signed with a key the provider does not publish
    with pytest.raises(LoginFailed):
        await provider.verify_id_token(token, "n0nce")
    assert standin.jwks_fetches == 3  # looked once more, then gave up
