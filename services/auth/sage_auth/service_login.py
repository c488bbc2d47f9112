"""Institutional login: the OIDC authorization code flow with PKCE, users made on first login,
and browser sessions that can mint a token for the command line.

States and sessions are random, kept server-side only as SHA-256 hashes, and expire.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import KW_ONLY, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from jwt.utils import base64url_encode

from sage_common.auth import Principal, token_hash
from sage_common.errors import BadRequest, Conflict

from . import service
from .models import NewToken, User, valid_name
from .oidc import LoginFailed, OidcProvider
from .store_login import LoginStore

_NEXT_RE = re.compile(r"^/(?![/\\])[\x21-\x7e]{0,500}$")
_MAX_SUFFIX = 50
PORTAL_TOKEN_NAME = "portal login"  # noqa: S105 - a name, not a secret


def pkce_challenge(verifier: str) -> str:
    return base64url_encode(hashlib.sha256(verifier.encode()).digest()).decode()


def username_from_claims(claims: dict[str, Any]) -> str:
    """A valid username from preferred_username or the email's local part ("user" at worst)."""
    for raw in (claims.get("preferred_username"), str(claims.get("email") or "").partition("@")[0]):
        if not isinstance(raw, str) or not raw:
            continue
        name = re.sub(r"[^a-z0-9_.-]+", "-", raw.strip().lower())
        name = re.sub(r"^[^a-z]+", "", name)[:64].rstrip("-.")
        if valid_name(name):
            return name
    return "user"


def return_allowed(target: str, hosts: frozenset[str], domain: str) -> bool:
    """Whether a login may send the browser on to `target`: a path on this site, or an http(s)
    URL on one of `hosts` or under the cookie `domain` (the portal's origin)."""
    if _NEXT_RE.match(target):
        return True
    if len(target) > 2000 or not target.isascii() or not target.isprintable():
        return False
    url = urlsplit(target)
    if url.scheme not in ("http", "https") or not url.hostname or url.username is not None:
        return False
    host = url.hostname.lower()
    suffix = domain.lower().lstrip(".")
    return host in hosts or bool(suffix) and (host == suffix or host.endswith("." + suffix))


@dataclass(frozen=True)
class Finished:
    """A completed login: the user, the session (its cookie value), the portal's token, and where
    the browser goes next ("" for the login page)."""

    user: User
    session: str
    portal_token: NewToken
    next_path: str


@dataclass
class Login:
    """The login flow against one provider, over the login tables."""

    store: LoginStore
    provider: OidcProvider
    _: KW_ONLY
    state_seconds: int
    session_hours: int
    return_hosts: frozenset[str] = frozenset()
    cookie_domain: str = ""

    async def begin(self, next_path: str | None, browser: str) -> str:
        """Remember a new login (state, nonce, PKCE verifier, bound to the `browser` cookie's
        value) and give the provider's URL for it."""
        if next_path and not return_allowed(next_path, self.return_hosts, self.cookie_domain):
            raise BadRequest("next must be a path on this site or a URL of the portal's domain")
        state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
        expires = datetime.now(UTC) + timedelta(seconds=self.state_seconds)
        await self.store.insert_state(
            token_hash(state), nonce, verifier, next_path or "", expires, token_hash(browser)
        )
        return await self.provider.authorization_url(state, nonce, pkce_challenge(verifier))

    async def finish(self, state: str, code: str, browser: str | None) -> Finished:
        """Check the state (and that this browser started it), redeem the code, verify the ID
        token; then a session and the portal's token, which ends with it."""
        pending = await self.store.take_state(token_hash(state))
        if pending is None:
            raise LoginFailed("this login is unknown or expired: start again")
        bound = pending["browser_hash"]
        if not browser or not bound or not hmac.compare_digest(token_hash(browser), bound):
            raise LoginFailed("this login was started in another browser: start again here")
        tokens = await self.provider.exchange(code, pending["code_verifier"])
        claims = await self.provider.verify_id_token(tokens["id_token"], pending["nonce"])
        wanted = ("preferred_username", "email", "name")
        if not all(claims.get(k) for k in wanted) and isinstance(tokens.get("access_token"), str):
            extra = await self.provider.userinfo(tokens["access_token"], str(claims["sub"]))
            claims = {**extra, **claims}  # what the signed ID token says wins
        user = await self._user_for(claims)
        session = secrets.token_urlsafe(32)
        expires = datetime.now(UTC) + timedelta(hours=self.session_hours)
        portal = await service.issue_token(
            self.store.users, user.username, PORTAL_TOKEN_NAME, ["all"], expires_at=expires
        )
        await self.store.insert_session(token_hash(session), user.username, expires, portal.id)
        return Finished(user, session, portal, pending["next_path"])

    async def _user_for(self, claims: dict[str, Any]) -> User:
        """The user linked to this identity; on first login, a new unapproved one. An existing
        account is linked only when its email is the provider's verified email and it has no
        identity at this provider yet; otherwise a free username is chosen."""
        issuer, subject = self.provider.issuer, str(claims["sub"])
        known = await self.store.identity_user(issuer, subject)
        if known is not None:
            return await self.store.users.get_user(known)
        name = str(claims.get("name") or "")[:256]
        email = str(claims.get("email") or "")[:256]
        base = username_from_claims(claims)
        for n in range(1, _MAX_SUFFIX + 1):
            username = base if n == 1 else f"{base[:60]}{n}"
            try:
                return await self.store.create_user_with_identity(
                    username, name, email, issuer, subject
                )
            except Conflict:
                pass
            if n == 1 and await self._may_link(username, email, claims):
                await self.store.link(username, issuer, subject)
                return await self.store.users.get_user(username)
        raise LoginFailed("no free username for this identity: ask an administrator")

    async def _may_link(self, username: str, email: str, claims: dict[str, Any]) -> bool:
        if not email or claims.get("email_verified") is not True:
            return False
        existing = await self.store.users.get_user(username)
        if existing.email.lower() != email.lower():
            return False
        return not await self.store.has_identity(username, self.provider.issuer)

    async def session_principal(self, session: str | None) -> Principal | None:
        if not session or len(session) > 256:
            return None
        return await self.store.session_principal(token_hash(session))

    async def logout(self, session: str | None) -> str | None:
        """End the session and revoke its portal token; that token's hash, to drop from caches."""
        if session and len(session) <= 256:
            return await self.store.end_session(token_hash(session))
        return None
