"""`SageClient`: one async client for the auth service, the object store and the ECR."""

from __future__ import annotations

from types import TracebackType

import aiohttp

from .auth import AuthAPI
from .ecr import EcrAPI
from .http import DEFAULT_HOST, DEFAULT_TIMEOUT, HttpSession, Transport
from .storage import StorageAPI


class SageClient:
    """The SAGE services behind one gateway; storage may live elsewhere (`store_url`).

    Use it as `async with SageClient(host, token) as sage: await sage.auth.whoami()`.
    Every failure raises `SageError`.
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        token: str | None = None,
        *,
        store_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._http = HttpSession(token, timeout=timeout, session=session)
        gateway = Transport(host, self._http)
        self.host = gateway.base_url
        self.auth = AuthAPI(gateway)
        self.ecr = EcrAPI(gateway)
        self.storage = StorageAPI(Transport(store_url, self._http) if store_url else gateway)

    async def close(self) -> None:
        """Close the HTTP session (unless the caller passed in their own)."""
        await self._http.close()

    async def __aenter__(self) -> SageClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
