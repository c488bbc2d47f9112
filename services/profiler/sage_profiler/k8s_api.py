"""A small client of the Kubernetes REST API for the Jobs runner: plain aiohttp, a bearer token.

In a pod the service account's token is re-read every minute (the kubelet rotates it). An outage
or overload (connection refused, 5xx, 429) is `RunnerUnavailable`, worth a retry; a refusal (403,
422, ...) is a `RunnerError` carrying the API server's own message.
"""

from __future__ import annotations

import json
import ssl
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from .runner import RunnerError, RunnerUnavailable

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_REREAD_SECONDS = 60.0
_BINARY = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}
_DECIMAL = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


def quantity(value: str) -> float:
    """A Kubernetes resource quantity (`128Mi`, `250m`, `1234567n`, `2`) as a plain number."""
    value = value.strip()
    for suffix, factor in _BINARY.items():
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * factor
    if value and value[-1] in _DECIMAL:
        return float(value[:-1]) * _DECIMAL[value[-1]]
    return float(value)


def api_time(value: str | None) -> float | None:
    """An API server time (`2024-05-01T10:00:03Z`, whole seconds) as a Unix timestamp."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class KubeApi:
    """Requests against one API server, authenticated by a fixed token or a token file."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str = "",
        token_file: Path | None = None,
        ca_file: Path | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.base = base_url.rstrip("/")
        self._token = token
        self._token_file = token_file
        self._token_read: float | None = None  # monotonic time of the last read
        self._ssl: ssl.SSLContext | bool = True
        if ca_file is not None and self.base.startswith("https:"):
            self._ssl = ssl.create_default_context(cafile=str(ca_file))
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _authorization(self) -> dict[str, str]:
        now = time.monotonic()
        stale = self._token_read is None or now - self._token_read > TOKEN_REREAD_SECONDS
        if self._token_file is not None and stale:
            try:
                self._token = self._token_file.read_text().strip()
            except OSError as exc:
                raise RunnerUnavailable(f"cannot read the service account token: {exc}") from None
            self._token_read = now
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        missing_ok: bool = False,
    ) -> dict[str, Any] | None:
        """One JSON request; None for a 404 when `missing_ok`."""
        text = await self._send(method, path, params, body, missing_ok)
        if text is None:
            return None
        answer: dict[str, Any] = json.loads(text) if text else {}
        return answer

    async def text(
        self, path: str, params: dict[str, str] | None = None, *, missing_ok: bool = False
    ) -> str | None:
        """A plain-text answer (pod logs)."""
        return await self._send("GET", path, params, None, missing_ok)

    async def _send(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None,
        body: dict[str, Any] | None,
        missing_ok: bool,
    ) -> str | None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        what = f"{method} {path}"
        try:
            async with self._session.request(
                method,
                self.base + path,
                params=params,
                json=body,
                headers=self._authorization(),
                ssl=self._ssl,
            ) as resp:
                text = await resp.text()
                if resp.status == 404 and missing_ok:
                    return None
                if resp.status >= 400:
                    raise _error(resp.status, what, text)
                return text
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise RunnerUnavailable(
                f"the Kubernetes API at {self.base} is unreachable ({what}): {exc}"
            ) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _error(status: int, what: str, text: str) -> RunnerError:
    """The API server's `Status` message, as the runner's error."""
    try:
        detail = json.loads(text).get("message") or text
    except ValueError:
        detail = text
    message = f"the Kubernetes API answered {status} to {what}: {str(detail)[:500]}"
    if status >= 500 or status == 429:
        return RunnerUnavailable(message)
    return RunnerError(message)
