"""The auth service's API as the client sees it: who am I, and my tokens."""

from __future__ import annotations

from typing import Any

from .http import Transport, quote_segment


class AuthAPI:
    """`/auth/...`: the caller's identity and user tokens (create, list, revoke)."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    async def whoami(self) -> dict[str, Any]:
        """`{username, name, email, is_admin, is_approved, groups, scopes}` of the token's user."""
        result: dict[str, Any] = await self._t.request("GET", "/auth/whoami")
        return result

    async def create_token(
        self, name: str, *, scopes: list[str] | None = None, days: int | None = None
    ) -> dict[str, Any]:
        """A new token; its secret (`token`) is in this answer only and never shown again.

        Scopes and expiry left out take the server's defaults.
        """
        body: dict[str, Any] = {"name": name}
        if scopes:
            body["scopes"] = scopes
        if days is not None:
            body["expires_in_days"] = days
        result: dict[str, Any] = await self._t.request("POST", "/auth/tokens", json=body)
        return result

    async def list_tokens(self) -> list[dict[str, Any]]:
        """The caller's tokens, without their secrets."""
        result: list[dict[str, Any]] | None = await self._t.request("GET", "/auth/tokens")
        return result or []

    async def revoke_token(self, token_id: str) -> None:
        """Revoke one token by its id; it stops working within the services' cache TTL."""
        await self._t.request("DELETE", f"/auth/tokens/{quote_segment(token_id)}")
