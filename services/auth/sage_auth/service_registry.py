"""Registry tokens: the Docker registry v2 token protocol, answered with JWTs the registry trusts.

Which actions a caller gets is a `RegistryPolicy`: `EcrRegistryPolicy` (the default) asks the ECR
API; `AdminAndBuilderPolicy` (`SAGE_AUTH_REGISTRY_POLICY=local`) serves admins, the builder (also
`delete`: it removes the images of deleted app versions) and the profiler (it tests every image
built); everyone else, anonymous callers too, gets a token with no access at all.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sage_common.auth import Principal
from sage_common.errors import BadRequest, NotFound

from .signing import Signer
from .store import Store

REGISTRY_SCOPE = "registry"
# Service accounts that may ask for a pull token on behalf of a user (Basic user `client+username`):
# the builder pulls an app's base images with its submitter's rights, never its own.
ON_BEHALF_CLIENTS = frozenset({"builder"})
# What each service account may do in the registry under the local policy (see above).
SERVICE_ACTIONS: dict[str, tuple[str, ...]] = {
    "builder": ("pull", "push", "delete"),
    "profiler": ("pull",),
}
_SCOPE_RE = re.compile(
    r"^([a-z0-9]+(?:\([a-z0-9]+\))?)"  # type, e.g. repository or repository(plugin)
    r":([^:\s]+(?::[0-9]+/[^:\s]+)?)"  # name, which may hold a host:port/ prefix
    r":([a-z*]+(?:,[a-z*]+)*)$"  # actions
)
MAX_SCOPES = 32


@dataclass(frozen=True)
class Access:
    """One resource and the actions on it, as in the JWT's `access` claim."""

    type: str
    name: str
    actions: tuple[str, ...]

    def limited(self, allowed: Collection[str]) -> Access | None:
        """This access with only the `allowed` actions; None when none is left."""
        actions = tuple(a for a in self.actions if a in allowed)
        return Access(self.type, self.name, actions) if actions else None


def parse_scopes(values: list[str]) -> list[Access]:
    """`repository:ns/name:pull,push` (one per parameter, or several separated by spaces)."""
    wanted: list[Access] = []
    for value in values:
        for scope in value.split():
            match = _SCOPE_RE.match(scope)
            if match is None:
                raise BadRequest("a scope looks like repository:namespace/name:pull,push")
            kind, name, actions = match.groups()
            wanted.append(Access(kind, name, tuple(dict.fromkeys(actions.split(",")))))
    if len(wanted) > MAX_SCOPES:
        raise BadRequest(f"at most {MAX_SCOPES} scopes at once")
    return wanted


async def on_behalf(
    store: Store, username: str, wanted: list[Access]
) -> tuple[Principal | None, list[Access]]:
    """Who a token on `username`'s behalf is decided for (the user, for the registry only; an
    unknown user is nobody), and what it may ask: pull only, so exactly what that user may read.
    """
    pulls = [Access(a.type, a.name, ("pull",)) for a in wanted if "pull" in a.actions]
    try:
        user = await store.get_user(username)
    except NotFound:
        return None, pulls
    return Principal(**user.model_dump(), scopes=[REGISTRY_SCOPE]), pulls


class RegistryPolicy(Protocol):
    """Decides which of the wanted actions a caller gets (None: anonymous)."""

    async def grant(self, who: Principal | None, wanted: list[Access]) -> list[Access]: ...


class AdminAndBuilderPolicy:
    """Admins get what they ask; service accounts get their `SERVICE_ACTIONS`."""

    async def grant(self, who: Principal | None, wanted: list[Access]) -> list[Access]:
        if who is None:
            return []
        if who.is_admin and who.has_scope(REGISTRY_SCOPE):
            return list(wanted)
        allowed = SERVICE_ACTIONS.get(who.client_id or "", ()) if who.is_service else ()
        granted = (a.limited(allowed) for a in wanted if a.type == "repository")
        return [a for a in granted if a is not None]


async def issue_token(
    signer: Signer,
    policy: RegistryPolicy,
    who: Principal | None,
    wanted: list[Access],
    *,
    service: str,
    issuer: str,
    lifetime: int,
) -> dict[str, Any]:
    """The token endpoint's answer: a signed JWT carrying what the policy granted."""
    granted = await policy.grant(who, wanted)
    now = int(time.time())
    claims = {
        "iss": issuer,
        "sub": who.username if who is not None else "",
        "aud": service,
        "exp": now + lifetime,
        "nbf": now - 10,
        "iat": now,
        "jti": secrets.token_urlsafe(16),
        "access": [asdict(a) for a in granted],
    }
    token = signer.sign(claims)
    return {
        "token": token,
        "access_token": token,
        "expires_in": lifetime,
        "issued_at": datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z"),
    }
