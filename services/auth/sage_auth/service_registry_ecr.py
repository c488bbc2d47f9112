"""Registry access decided by the ECR API: who may pull or push follows the catalogue's ACLs.

Per repository scope asked for, `GET /api/registry/access` with this service's own secret; only
actions both asked for and allowed are granted, and nothing when the ECR cannot answer (fail
closed). Admins with a registry-scoped token and the builder are decided here, never waiting on it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp

from sage_common.auth import Principal

from .service_registry import REGISTRY_SCOPE, SERVICE_ACTIONS, Access, AdminAndBuilderPolicy

log = logging.getLogger(__name__)

ACCESS_PATH = "/api/registry/access"
REGISTRY_ACTIONS = ("pull", "push")


class EcrUnanswered(Exception):
    """The ECR gave no usable answer (unreachable, slow, refused, or malformed)."""


class EcrRegistryPolicy:
    """Asks the ECR API per repository; admins and the builder keep `AdminAndBuilderPolicy`."""

    def __init__(
        self,
        ecr_url: str,
        client_id: str,
        client_secret: str,
        *,
        timeout: float = 3.0,
    ) -> None:
        self._url = ecr_url.rstrip("/") + ACCESS_PATH
        self._secret = client_secret
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._local = AdminAndBuilderPolicy()
        self._session: aiohttp.ClientSession | None = None
        if not client_secret:
            log.warning(
                "no client secret for %r: the ECR API will refuse to say who may use the registry",
                client_id,
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def grant(self, who: Principal | None, wanted: list[Access]) -> list[Access]:
        if who is not None and (
            (who.is_admin and who.has_scope(REGISTRY_SCOPE))
            or (who.is_service and "push" in SERVICE_ACTIONS.get(who.client_id or "", ()))
        ):
            return await self._local.grant(who, wanted)
        # A token not meant for the registry acts for nobody there: it pulls what anyone may.
        asker = who if who is not None and who.has_scope(REGISTRY_SCOPE) else None
        repositories = [a for a in wanted if a.type == "repository"]
        answers = await asyncio.gather(*(self._allowed(asker, a.name) for a in repositories))
        granted = (a.limited(allowed) for a, allowed in zip(repositories, answers, strict=True))
        return [a for a in granted if a is not None]

    async def _allowed(self, asker: Principal | None, repository: str) -> frozenset[str]:
        """The registry actions the ECR allows `asker` on `repository`; none if it cannot say."""
        params = {"repository": repository, "username": "", "groups": "", "admin": "false"}
        if asker is not None:
            params.update(
                username=asker.username,
                groups=",".join(asker.groups),
                admin="true" if asker.is_admin else "false",
            )
        try:
            actions = await self._ask(params)
        except EcrUnanswered as exc:
            log.warning(
                "registry access for %s refused: the ECR API gave no answer (%s)", repository, exc
            )
            return frozenset()
        return frozenset(a for a in actions if a in REGISTRY_ACTIONS)

    async def _ask(self, params: dict[str, str]) -> list[Any]:
        """The actions in the ECR's answer; EcrUnanswered when there is no usable answer."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        headers = {"Authorization": f"sage {self._secret}", "Accept": "application/json"}
        try:
            async with self._session.get(self._url, params=params, headers=headers) as resp:
                if resp.status != 200:
                    raise EcrUnanswered(f"HTTP {resp.status}")
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise EcrUnanswered(type(exc).__name__) from None
        if not isinstance(body, dict):
            raise EcrUnanswered("an answer that is not an object")
        if not isinstance(actions := body.get("actions"), list):
            raise EcrUnanswered("an answer without actions")
        return actions
