"""The registry as the builder sees it: a token from the auth service, and the index it serves.

After a push the builder reads the image index back from the registry, so the digests it reports
are the ones the registry serves, not what the local store thought it sent.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)


# A username the builder may act for: no `:` (Basic) and no `+` (the on-behalf separator).
USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,149}$")


class RegistryError(Exception):
    """The registry or its token service answered something other than what a push needs."""


@dataclass(frozen=True)
class Credentials:
    """The builder's service client credentials, given to the auth service for registry tokens."""

    username: str
    password: str

    @property
    def basic(self) -> str:
        return base64.b64encode(f"{self.username}:{self.password}".encode()).decode()

    def on_behalf(self, user: str) -> Credentials:
        """These credentials asking the auth service for `user`'s pull rights, never more."""
        if not USER_RE.match(user):
            raise ValueError(f"not a username: {user!r}")
        return Credentials(f"{self.username}+{user}", self.password)


def write_authfile(directory: Path, registry: str, creds: Credentials) -> Path:
    """A containers-auth.json for buildah in a private directory; buildah trades it for a token."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / "auth.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"auths": {registry: {"auth": creds.basic}}}, f)
    return path


class RegistryClient:
    """Reads manifests with a registry token from the auth service (Basic client credentials)."""

    def __init__(
        self,
        registry: str,
        *,
        token_url: str,
        service: str,
        creds: Credentials | None,
        tls: bool = False,
        timeout: float = 15.0,
    ) -> None:
        self.base = f"{'https' if tls else 'http'}://{registry}"
        self.token_url, self.service, self.creds = token_url, service, creds
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[aiohttp.ClientSession]:
        """A client session; a registry that cannot be reached raises RegistryError, saying why."""
        try:
            async with aiohttp.ClientSession(timeout=self.timeout) as session:
                yield session
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RegistryError(
                f"the registry at {self.base} is unreachable ({_why(exc)})"
            ) from None

    async def token(self, session: aiohttp.ClientSession, repository: str, actions: str) -> str:
        """A registry JWT for `repository` with `actions` (e.g. `pull` or `pull,push`)."""
        assert self.creds is not None
        params = {"service": self.service, "scope": f"repository:{repository}:{actions}"}
        headers = {"Authorization": f"Basic {self.creds.basic}"}
        async with session.get(self.token_url, params=params, headers=headers) as resp:
            if resp.status != 200:
                raise RegistryError(f"the auth service refused a registry token ({resp.status})")
            body = await resp.json(content_type=None)
        token = body.get("token") or body.get("access_token")
        if not token:
            raise RegistryError("the auth service answered no registry token")
        return str(token)

    async def authorization(
        self, session: aiohttp.ClientSession, repository: str, actions: str
    ) -> dict[str, str]:
        """The header that grants `actions` on `repository`; none without credentials."""
        if self.creds is None:
            return {}
        return {"Authorization": f"Bearer {await self.token(session, repository, actions)}"}

    async def ping(self) -> None:
        """Raise RegistryError (saying why) unless the registry answers its API root."""
        async with self.session() as session, session.get(f"{self.base}/v2/") as resp:
            if resp.status not in (200, 401):
                raise RegistryError(f"the registry answered {resp.status} at /v2/")

    async def index(self, repository: str, reference: str) -> tuple[str, dict[str, str]]:
        """The index digest and `{platform: manifest digest}` of `repository:reference`."""
        async with self.session() as session:
            auth = await self.authorization(session, repository, "pull")
            headers = {"Accept": ", ".join(INDEX_TYPES), **auth}
            url = f"{self.base}/v2/{repository}/manifests/{reference}"
            async with session.get(url, headers=headers) as resp:
                if resp.status != 200:
                    raise RegistryError(
                        f"the registry answered {resp.status} for {repository}:{reference}"
                    )
                raw = await resp.read()
                media = resp.headers.get("Content-Type", "").split(";")[0]
        if media not in INDEX_TYPES:
            raise RegistryError(
                f"{repository}:{reference} is a {media or 'manifest'}, not an index"
            )
        digests: dict[str, str] = {}
        for entry in json.loads(raw).get("manifests", []):
            plat = entry.get("platform") or {}
            parts = (plat.get("os"), plat.get("architecture"), plat.get("variant"))
            digests["/".join(p for p in parts if p)] = entry["digest"]
        return "sha256:" + hashlib.sha256(raw).hexdigest(), digests


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"connection failed: {exc.os_error.strerror or exc.os_error}"
    return type(exc).__name__
