"""One OpenID Connect provider: discovery, the code exchange, and ID token verification.

Documents come over aiohttp; signatures and claims are checked by pyjwt against the provider's
JWKS, fetched again once when a token names a key we have not seen (the provider rotated keys).
"""

from __future__ import annotations

import hmac
import logging
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import jwt

from sage_common.errors import ProblemError, Unavailable

log = logging.getLogger(__name__)

# Signatures by the provider's published keys only: no HMAC (our client secret), no "none".
ALLOWED_ALGORITHMS = frozenset(
    "RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA".split()
)


class LoginFailed(ProblemError):
    status, title = 401, "Login Failed"


class OidcProvider:
    """The configured provider, as its discovery document describes it."""

    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str,
        redirect_uri: str,
        *,
        scopes: str = "openid email profile",
        timeout: float = 10.0,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self._secret = client_secret
        self.redirect_uri = redirect_uri
        self.scopes = scopes
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._metadata: dict[str, Any] | None = None
        self._jwks: jwt.PyJWKSet | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def _get_json(self, url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        try:
            async with self._http().get(url, headers=headers) as resp:
                if resp.status != 200:
                    raise Unavailable(f"the identity provider answered {resp.status}")
                return await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("identity provider unreachable: %s", type(exc).__name__)
            raise Unavailable("the identity provider is unreachable") from None

    async def metadata(self) -> dict[str, Any]:
        """The discovery document, fetched once; its issuer must be the configured one."""
        if self._metadata is None:
            doc = await self._get_json(self.issuer + "/.well-known/openid-configuration")
            if str(doc.get("issuer", "")).rstrip("/") != self.issuer:
                raise Unavailable("the identity provider's discovery names another issuer")
            self._metadata = doc
        return self._metadata

    async def authorization_url(self, state: str, nonce: str, code_challenge: str) -> str:
        meta = await self.metadata()
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": self.redirect_uri,
                "scope": self.scopes,
                "state": state,
                "nonce": nonce,
                "code_challenge": code_challenge,
                "code_challenge_method": "S256",
            }
        )
        endpoint = meta["authorization_endpoint"]
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"

    async def exchange(self, code: str, code_verifier: str) -> dict[str, Any]:
        """Trade the code (with the PKCE verifier and our secret) for the provider's tokens."""
        meta = await self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": code_verifier,
        }
        try:
            # RFC 6749 2.3.1: client_secret_basic form-encodes both parts before base64
            basic = aiohttp.encode_basic_auth(
                quote(self.client_id, safe=""), quote(self._secret, safe="")
            )
            async with self._http().post(
                meta["token_endpoint"], data=form, headers={"Authorization": basic}
            ) as resp:
                body: dict[str, Any] = await resp.json(content_type=None)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("identity provider token endpoint failed: %s", type(exc).__name__)
            raise Unavailable("the identity provider is unreachable") from None
        if status != 200 or not isinstance(body.get("id_token"), str):
            log.info("code exchange refused: %s", body.get("error") or status)
            raise LoginFailed("the identity provider did not accept the login")
        return body

    async def _key(self, kid: str | None) -> jwt.PyJWK:
        for refresh in (False, True):
            if self._jwks is None or refresh:
                meta = await self.metadata()
                self._jwks = jwt.PyJWKSet.from_dict(await self._get_json(meta["jwks_uri"]))
            for key in self._jwks.keys:
                if kid is None or key.key_id == kid:
                    return key
        raise LoginFailed("the ID token is signed with a key the provider does not publish")

    async def verify_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        """The ID token's claims, once signature, issuer, audience, expiry and nonce are right."""
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError:
            raise LoginFailed("the ID token is malformed") from None
        alg = header.get("alg")
        if alg not in ALLOWED_ALGORITHMS:
            raise LoginFailed("the ID token's algorithm is not accepted")
        key = await self._key(header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key=key,
                algorithms=[alg],
                audience=self.client_id,
                issuer=(await self.metadata())["issuer"],
                leeway=30,
                options={"require": ["iss", "aud", "exp", "iat", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise LoginFailed(f"the ID token is not valid: {type(exc).__name__}") from None
        if not hmac.compare_digest(str(claims.get("nonce", "")).encode(), nonce.encode()):
            raise LoginFailed("the ID token's nonce does not match this login")
        aud = claims.get("aud")
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != self.client_id:
            raise LoginFailed("the ID token was issued to another client")
        return claims

    async def userinfo(self, access_token: str, subject: str) -> dict[str, Any]:
        """Claims from the UserInfo endpoint (providers may keep email and names out of the ID
        token); {} when there is none or it speaks of another subject."""
        endpoint = (await self.metadata()).get("userinfo_endpoint")
        if not endpoint:
            return {}
        info = await self._get_json(endpoint, {"Authorization": f"Bearer {access_token}"})
        return info if info.get("sub") == subject else {}
