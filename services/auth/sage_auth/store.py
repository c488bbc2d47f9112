"""SQL of the auth schema on asyncpg; driver errors become domain errors here."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from sage_common.auth import Principal
from sage_common.errors import Conflict, NotFound

from .models import CreateUser, Group, Token, User

_USER = """SELECT u.username, u.name, u.email, u.is_admin, u.is_approved, u.created_at,
                  u.last_login_at,
                  ARRAY(SELECT m.group_name FROM memberships m
                        WHERE m.username = u.username ORDER BY m.group_name) AS groups
           FROM users u"""
_GROUP = """SELECT g.name, g.description, g.created_at,
                   ARRAY(SELECT m.username FROM memberships m
                         WHERE m.group_name = g.name ORDER BY m.username) AS members
            FROM groups g"""
_LISTED = """SELECT id, name, username, scopes, expires_at, created_at, last_used_at,
                    revoked_at IS NOT NULL AS revoked
             FROM tokens"""
# The one query behind every token check: unique index on token_hash, user by primary key,
# groups by the memberships primary key.
LOOKUP = """SELECT t.id, t.username, t.scopes, t.expires_at, u.is_admin, u.is_approved,
                         ARRAY(SELECT m.group_name FROM memberships m
                               WHERE m.username = t.username ORDER BY m.group_name) AS groups
                  FROM tokens t JOIN users u ON u.username = t.username
                  WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND t.expires_at > now()"""
REVOKE = """UPDATE tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL
            RETURNING token_hash"""


class Store:
    """The auth service's tables, one method per statement (or per transaction)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # ------------------------------------------------------------------ users
    async def insert_user(self, user: CreateUser) -> User:
        try:
            await self.pool.execute(
                "INSERT INTO users (username, name, email, is_admin, is_approved)"
                " VALUES ($1, $2, $3, $4, $5)",
                user.username,
                user.name,
                user.email,
                user.is_admin,
                user.is_approved,
            )
        except asyncpg.UniqueViolationError:
            raise Conflict(f"user {user.username} already exists") from None
        return await self.get_user(user.username)

    async def get_user(self, username: str) -> User:
        row = await self.pool.fetchrow(_USER + " WHERE u.username = $1", username)
        if row is None:
            raise NotFound(f"no user {username}")
        return User(**dict(row))

    async def list_users(self) -> list[User]:
        return [User(**dict(r)) for r in await self.pool.fetch(_USER + " ORDER BY u.username")]

    async def update_user(self, username: str, changes: dict[str, Any]) -> User:
        allowed = {"name", "email", "is_admin", "is_approved"}
        fields = {k: v for k, v in changes.items() if k in allowed and v is not None}
        if fields:
            sets = ", ".join(f"{k} = ${i}" for i, k in enumerate(fields, start=2))
            done = await self.pool.execute(
                f"UPDATE users SET {sets}, updated_at = now() WHERE username = $1",
                username,
                *fields.values(),
            )
            if done == "UPDATE 0":
                raise NotFound(f"no user {username}")
        return await self.get_user(username)

    async def delete_user(self, username: str) -> None:
        if await self.pool.execute("DELETE FROM users WHERE username = $1", username) == "DELETE 0":
            raise NotFound(f"no user {username}")

    # ----------------------------------------------------------------- groups
    async def insert_group(self, name: str, description: str) -> Group:
        try:
            await self.pool.execute(
                "INSERT INTO groups (name, description) VALUES ($1, $2)", name, description
            )
        except asyncpg.UniqueViolationError:
            raise Conflict(f"group {name} already exists") from None
        return await self.get_group(name)

    async def get_group(self, name: str) -> Group:
        row = await self.pool.fetchrow(_GROUP + " WHERE g.name = $1", name)
        if row is None:
            raise NotFound(f"no group {name}")
        return Group(**dict(row))

    async def list_groups(self) -> list[Group]:
        return [Group(**dict(r)) for r in await self.pool.fetch(_GROUP + " ORDER BY g.name")]

    async def delete_group(self, name: str) -> None:
        if await self.pool.execute("DELETE FROM groups WHERE name = $1", name) == "DELETE 0":
            raise NotFound(f"no group {name}")

    async def add_member(self, group: str, username: str) -> None:
        try:
            await self.pool.execute(
                "INSERT INTO memberships (username, group_name) VALUES ($1, $2)"
                " ON CONFLICT DO NOTHING",
                username,
                group,
            )
        except asyncpg.ForeignKeyViolationError:
            raise NotFound(f"no group {group} or no user {username}") from None

    async def remove_member(self, group: str, username: str) -> None:
        done = await self.pool.execute(
            "DELETE FROM memberships WHERE username = $1 AND group_name = $2", username, group
        )
        if done == "DELETE 0":
            raise NotFound(f"{username} is not a member of {group}")

    # ----------------------------------------------------------------- tokens
    async def insert_token(
        self, token_hash: str, username: str, name: str, scopes: list[str], expires_at: datetime
    ) -> asyncpg.Record:
        try:
            return await self.pool.fetchrow(
                "INSERT INTO tokens (token_hash, username, name, scopes, expires_at)"
                " VALUES ($1, $2, $3, $4, $5) RETURNING id, created_at",
                token_hash,
                username,
                name,
                scopes,
                expires_at,
            )
        except asyncpg.ForeignKeyViolationError:
            raise NotFound(f"no user {username}") from None

    async def list_tokens(self, username: str) -> list[Token]:
        rows = await self.pool.fetch(_LISTED + " WHERE username = $1 ORDER BY created_at", username)
        return [Token(**dict(r)) for r in rows]

    async def get_token(self, token_id: UUID) -> Token | None:
        row = await self.pool.fetchrow(_LISTED + " WHERE id = $1", token_id)
        return Token(**dict(row)) if row is not None else None

    async def revoke_token(self, token_id: UUID) -> str | None:
        """Mark the token revoked; its hash (for cache eviction), or None if it was not live."""
        return await self.pool.fetchval(REVOKE, token_id)

    async def lookup_token(self, token_hash: str) -> tuple[Principal, UUID] | None:
        """The principal behind a live token (by its hash) and the token's id; None otherwise."""
        row = await self.pool.fetchrow(LOOKUP, token_hash)
        if row is None:
            return None
        return Principal(**dict(row), exp=int(row["expires_at"].timestamp())), row["id"]

    async def touch_tokens(self, used: Sequence[tuple[UUID, datetime]]) -> None:
        """Record last uses in one statement (they are batched, never written per request)."""
        if not used:
            return
        await self.pool.execute(
            """UPDATE tokens t SET last_used_at = u.at
               FROM unnest($1::uuid[], $2::timestamptz[]) AS u(id, at)
               WHERE t.id = u.id AND (t.last_used_at IS NULL OR t.last_used_at < u.at)""",
            [i for i, _ in used],
            [at for _, at in used],
        )
