"""Institutional login: the OIDC authorization code flow with PKCE, users made on first login,
and browser sessions that can mint a token for the command line.

States and sessions are random, kept server-side only as SHA-256 hashes, and expire.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from sage_common.auth import Principal, token_hash
from sage_common.errors import BadRequest, Conflict

from .models import User, valid_name
from .oidc import LoginFailed, OidcProvider
from .store_login import LoginStore

_NEXT_RE = re.compile(r"^/(?![/\\])[\x21-\x7e]{0,500}$")
_MAX_SUFFIX = 50


def pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


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


class Login:
    """The login flow against one provider, over the login tables."""

    def __init__(
        self, store: LoginStore, provider: OidcProvider, *, state_seconds: int, session_hours: int
    ) -> None:
        self.store = store
        self.provider = provider
        self._state_seconds = state_seconds
        self._session_hours = session_hours

    async def begin(self, next_path: str | None) -> str:
        """Remember a new login (state, nonce, PKCE verifier) and give the provider's URL for it."""
        if next_path and not _NEXT_RE.match(next_path):
            raise BadRequest("next must be a path on this site")
        state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
        expires = datetime.now(UTC) + timedelta(seconds=self._state_seconds)
        await self.store.insert_state(token_hash(state), nonce, verifier, next_path or "", expires)
        return await self.provider.authorization_url(state, nonce, pkce_challenge(verifier))

    async def finish(self, state: str, code: str) -> tuple[User, str, str]:
        """Check the state, redeem the code, verify the ID token: (user, session, next path)."""
        pending = await self.store.take_state(token_hash(state))
        if pending is None:
            raise LoginFailed("this login is unknown or expired: start again")
        tokens = await self.provider.exchange(code, pending["code_verifier"])
        claims = await self.provider.verify_id_token(tokens["id_token"], pending["nonce"])
        wanted = ("preferred_username", "email", "name")
        if not all(claims.get(k) for k in wanted) and isinstance(tokens.get("access_token"), str):
            extra = await self.provider.userinfo(tokens["access_token"], str(claims["sub"]))
            claims = {**extra, **claims}  # what the signed ID token says wins
        user = await self._user_for(claims)
        session = secrets.token_urlsafe(32)
        expires = datetime.now(UTC) + timedelta(hours=self._session_hours)
        await self.store.insert_session(token_hash(session), user.username, expires)
        return user, session, pending["next_path"]

    async def _user_for(self, claims: dict[str, Any]) -> User:
        """The user linked to this identity; on first login, a new unapproved one.

        An existing account is linked only when its email is the provider's verified email and
        it has no identity at this provider yet; otherwise a free username is chosen.
        """
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

    async def logout(self, session: str | None) -> None:
        if session and len(session) <= 256:
            await self.store.delete_session(token_hash(session))
