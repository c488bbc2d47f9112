"""HTTP plumbing shared by every sub-API: one aiohttp session, the token header, error mapping.

A `Transport` is one base URL (the gateway, or the object store when `SAGE_STORE_URL` differs) on
the shared session. Everything that can go wrong on the wire leaves here as a `SageError`.
"""

from __future__ import annotations

import json as jsonlib
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from . import __version__
from .errors import SageConnectionError, SageError, error_from_answer

DEFAULT_HOST = "http://localhost:8080"
DEFAULT_TIMEOUT = 30.0
Params = Mapping[str, str | int]


def normalize_url(url: str) -> str:
    """The base URL without a trailing slash; refuses anything but http(s)."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")) or len(url) <= len("https://"):
        raise SageError(0, f"not an http(s) URL: {url!r} (set SAGE_HOST or --host)")
    return url


def quote_path(path: str) -> str:
    """Percent-encode a key or prefix for the URL path, keeping its `/` separators."""
    return quote(path, safe="/")


def quote_segment(value: str) -> str:
    """Percent-encode one path segment (an id), `/` included."""
    return quote(str(value), safe="")


def _connect_reason(exc: aiohttp.ClientConnectorError) -> str:
    os_error = exc.os_error
    if isinstance(os_error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(os_error, socket.gaierror):
        return "unknown host"
    return os_error.strerror or str(os_error) or type(os_error).__name__


class HttpSession:
    """The aiohttp session and credentials that every transport of one client shares."""

    def __init__(
        self,
        token: str | None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.token = token
        self.timeout = timeout
        self._session = session
        self._owned = session is None

    def get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=self.timeout, sock_read=self.timeout
                ),
                headers={"User-Agent": f"sage-client/{__version__}"},
            )
            self._owned = True
        return self._session

    async def close(self) -> None:
        if self._owned and self._session is not None and not self._session.closed:
            await self._session.close()

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"sage {self.token}"} if self.token else {}


class Transport:
    """Requests against one base URL; non-2xx answers and wire failures raise `SageError`."""

    def __init__(self, base_url: str, http: HttpSession) -> None:
        self.base_url = normalize_url(base_url)
        self.http = http

    def url(self, path: str) -> URL:
        return URL(self.base_url + path, encoded=True)

    @asynccontextmanager
    async def open(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send a request and yield its 2xx response for streaming; errors raise `SageError`."""
        all_headers = {**self.http.auth_headers(), **(headers or {})}
        try:
            async with self.http.get().request(
                method,
                self.url(path),
                params=params,
                json=json,
                data=data,
                headers=all_headers,
            ) as response:
                if response.status >= 400:
                    text = await response.text(errors="replace")
                    raise error_from_answer(
                        response.status, response.reason, text, response.headers.get("Retry-After")
                    )
                yield response
        except TimeoutError:
            raise SageConnectionError(
                f"no answer from {self.base_url} within {self.http.timeout:g} s"
            ) from None
        except aiohttp.ClientConnectorError as exc:
            raise SageConnectionError(
                f"cannot connect to {self.base_url}: {_connect_reason(exc)}"
            ) from None
        except aiohttp.ServerDisconnectedError:
            raise SageConnectionError(
                f"{self.base_url} closed the connection before answering"
            ) from None
        except aiohttp.ClientPayloadError:
            raise SageConnectionError(f"the answer from {self.base_url} was cut off") from None
        except aiohttp.InvalidURL as exc:
            raise SageError(0, f"invalid URL: {exc}") from None
        except aiohttp.ClientResponseError as exc:
            raise SageError(exc.status, exc.message or "bad answer") from None
        except aiohttp.ClientError as exc:
            raise SageConnectionError(
                f"request to {self.base_url} failed: {exc or type(exc).__name__}"
            ) from None

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """One call whose answer is JSON (or empty, as 204 is); returns the decoded body."""
        async with self.open(
            method, path, params=params, json=json, data=data, headers=headers
        ) as response:
            text = await response.text(errors="replace")
            if response.status == 204 or not text.strip():
                return None
            try:
                return jsonlib.loads(text)
            except ValueError:
                raise SageError(
                    response.status, "the server's answer is not JSON", body=text[:200]
                ) from None
