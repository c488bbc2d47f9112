"""SQL of institutional login: pending logins, linked identities and browser sessions."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from sage_common.auth import Principal
from sage_common.errors import Conflict

from .models import User
from .store import REVOKE, Store

_SESSION = """SELECT u.username, u.is_admin, u.is_approved, s.expires_at,
                     ARRAY(SELECT m.group_name FROM memberships m
                           WHERE m.username = u.username ORDER BY m.group_name) AS groups
              FROM sessions s JOIN users u ON u.username = s.username
              WHERE s.session_hash = $1 AND s.expires_at > now()"""
_LINK = "INSERT INTO identities (issuer, subject, username) VALUES ($1, $2, $3)"


class LoginStore:
    """Tables behind the OIDC login; users themselves stay with `Store`."""

    def __init__(self, store: Store) -> None:
        self.users = store
        self.pool = store.pool

    async def insert_state(
        self,
        state_hash: str,
        nonce: str,
        code_verifier: str,
        next_path: str,
        expires_at: datetime,
        browser_hash: str,
    ) -> None:
        await self.pool.execute("DELETE FROM login_states WHERE expires_at < now()")
        await self.pool.execute(
            "INSERT INTO login_states"
            " (state_hash, nonce, code_verifier, next_path, expires_at, browser_hash)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            state_hash,
            nonce,
            code_verifier,
            next_path,
            expires_at,
            browser_hash,
        )

    async def take_state(self, state_hash: str) -> asyncpg.Record | None:
        """The pending login for this state, removed so it serves once; None if unknown or stale."""
        row = await self.pool.fetchrow(
            "DELETE FROM login_states WHERE state_hash = $1"
            " RETURNING nonce, code_verifier, next_path, browser_hash,"
            " expires_at > now() AS fresh",
            state_hash,
        )
        return row if row is not None and row["fresh"] else None

    async def identity_user(self, issuer: str, subject: str) -> str | None:
        return await self.pool.fetchval(
            "SELECT username FROM identities WHERE issuer = $1 AND subject = $2", issuer, subject
        )

    async def has_identity(self, username: str, issuer: str) -> bool:
        return bool(
            await self.pool.fetchval(
                "SELECT 1 FROM identities WHERE username = $1 AND issuer = $2", username, issuer
            )
        )

    async def link(self, username: str, issuer: str, subject: str) -> None:
        await self.pool.execute(_LINK, issuer, subject, username)

    async def create_user_with_identity(
        self, username: str, name: str, email: str, issuer: str, subject: str
    ) -> User:
        """A new, unapproved user and its identity, together; Conflict if the username is taken."""
        async with self.pool.acquire() as conn, conn.transaction():
            try:
                await conn.execute(
                    "INSERT INTO users (username, name, email) VALUES ($1, $2, $3)",
                    username,
                    name,
                    email,
                )
            except asyncpg.UniqueViolationError:
                raise Conflict(f"user {username} already exists") from None
            await conn.execute(_LINK, issuer, subject, username)
        return await self.users.get_user(username)

    async def insert_session(
        self, session_hash: str, username: str, expires_at: datetime, token_id: UUID
    ) -> None:
        """A new session with the portal token made for it; the user's last login is now."""
        await self.pool.execute("DELETE FROM sessions WHERE expires_at < now()")
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO sessions (session_hash, username, expires_at, token_id)"
                " VALUES ($1, $2, $3, $4)",
                session_hash,
                username,
                expires_at,
                token_id,
            )
            await conn.execute(
                "UPDATE users SET last_login_at = now() WHERE username = $1", username
            )

    async def session_principal(self, session_hash: str) -> Principal | None:
        row = await self.pool.fetchrow(_SESSION, session_hash)
        if row is None:
            return None
        return Principal(**dict(row), scopes=["all"], exp=int(row["expires_at"].timestamp()))

    async def end_session(self, session_hash: str) -> str | None:
        """Delete the session and revoke its portal token; that token's hash when it was live."""
        async with self.pool.acquire() as conn, conn.transaction():
            token_id = await conn.fetchval(
                "DELETE FROM sessions WHERE session_hash = $1 RETURNING token_id", session_hash
            )
            if token_id is None:
                return None
            return await conn.fetchval(REVOKE, token_id)
