"""Use cases of the auth service: who may manage users, groups and tokens, and how tokens look.

Plain functions over a `Store` and the caller's `Principal`; no HTTP, no SQL.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from uuid import UUID

from sage_common.auth import Principal, token_hash
from sage_common.errors import Conflict, Forbidden, NotFound, Unauthorized, Unprocessable

from .config import Config
from .models import (
    CreateGroup,
    CreateToken,
    CreateUser,
    Group,
    NewToken,
    Token,
    UpdateUser,
    User,
    Whoami,
)
from .store import Store

TOKEN_PREFIX = "sage_"  # noqa: S105 - a prefix, not a secret
ADMIN_SCOPE = "auth:admin"


def service_principal(client_id: str) -> Principal:
    """How a service account appears to every service: `service:<client_id>`, never an admin."""
    return Principal(
        username=f"service:{client_id}", client_id=client_id, is_approved=True, scopes=["all"]
    )


def require_admin(who: Principal) -> None:
    if not who.is_admin:
        raise Forbidden("this needs an administrator")
    if not who.has_scope(ADMIN_SCOPE):
        raise Forbidden(f"this token's scopes do not include {ADMIN_SCOPE}")


def _require_person(who: Principal) -> None:
    if who.is_service:
        raise Forbidden("service accounts have no user tokens")


async def whoami(store: Store, who: Principal) -> Whoami:
    if who.is_service:
        return Whoami(
            username=who.username, is_admin=False, is_approved=True, groups=[], scopes=who.scopes
        )
    user = await store.get_user(who.username)
    return Whoami(**user.model_dump(), scopes=who.scopes)


# ------------------------------------------------------------------------------ tokens ----
async def issue_token(
    store: Store,
    username: str,
    name: str,
    scopes: list[str],
    days: int | None = None,
    *,
    expires_at: datetime | None = None,
) -> NewToken:
    """Make and store a token for `username` (lasting `days`, or until `expires_at`); the only
    moment the token itself exists: a recognisable prefix and 256 random bits, URL-safe."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    if expires_at is None:
        expires_at = datetime.now(UTC) + timedelta(days=days or 1)
    scopes = sorted(set(scopes))
    row = await store.insert_token(token_hash(secret), username, name, scopes, expires_at)
    return NewToken(**dict(row), name=name, token=secret, scopes=scopes, expires_at=expires_at)


def token_expiry(
    requested_days: int | None, config: Config, parent_exp: int | None = None
) -> datetime:
    """When a new token expires. It never outlives the token or session that makes it: a
    default lifetime is cut to the parent's expiry, an explicit longer one is refused (422)."""
    if requested_days is not None and requested_days > config.token_max_days:
        raise Unprocessable(f"a token may live at most {config.token_max_days} days")
    expires = datetime.now(UTC) + timedelta(days=requested_days or config.token_default_days)
    if parent_exp is not None:
        limit = datetime.fromtimestamp(parent_exp, UTC)
        if expires > limit:
            if requested_days is not None:
                raise Unprocessable(
                    "a token may not outlive the token or session that makes it, which expires "
                    f"at {limit:%Y-%m-%dT%H:%M:%SZ}: ask for fewer days, or leave "
                    "expires_in_days out to get a token that expires with it"
                )
            expires = limit
    return expires


async def create_token(store: Store, who: Principal, body: CreateToken, config: Config) -> NewToken:
    """A new token for the caller, with at most the caller's own scopes and lifetime."""
    _require_person(who)
    scopes = who.scopes if body.scopes is None else body.scopes
    beyond = [s for s in scopes if not who.has_scope(s)]
    if beyond:
        raise Forbidden(f"this token cannot grant scopes it lacks: {', '.join(sorted(beyond))}")
    expires_at = token_expiry(body.expires_in_days, config, who.exp)
    return await issue_token(store, who.username, body.name, scopes, expires_at=expires_at)


async def list_tokens(store: Store, who: Principal, username: str | None = None) -> list[Token]:
    """The caller's tokens; an admin may ask for anyone's."""
    _require_person(who)
    if username is not None and username != who.username:
        require_admin(who)
        await store.get_user(username)  # 404 for an unknown user rather than an empty list
        return await store.list_tokens(username)
    return await store.list_tokens(who.username)


async def revoke_token(store: Store, who: Principal, token_id: UUID) -> str | None:
    """Revoke a token of the caller's (or anyone's, for an admin); others' tokens are 404.

    Returns the token's hash when this call revoked it, so caches can forget it at once.
    """
    token = await store.get_token(token_id)
    mine = token is not None and token.username == who.username
    if token is None or not (mine or (who.is_admin and who.has_scope(ADMIN_SCOPE))):
        raise NotFound("no such token")
    return await store.revoke_token(token_id)


# ---------------------------------------------------------------------- users and groups ----
async def list_users(store: Store, who: Principal) -> list[User]:
    require_admin(who)
    return await store.list_users()


async def get_user(store: Store, who: Principal, username: str) -> User:
    """One user: oneself, or anyone for an admin or a service account (SAGE's ECR reads the
    users behind the tokens it checks); others get 403 whether the user exists or not."""
    if username != who.username and not who.is_service:
        require_admin(who)
    return await store.get_user(username)


async def get_self(store: Store, who: Principal) -> User:
    """The caller as a user (SAGE's `/users/~self`); service accounts are not users (404)."""
    if who.is_service:
        raise NotFound("a service account is not a user")
    return await store.get_user(who.username)


def require_service(who: Principal | None) -> Principal:
    """Introspection is for services: 401 without credentials, 403 for a person's token."""
    if who is None:
        raise Unauthorized(
            "token_info needs a service's credentials: 'Authorization: Sage <service secret>'"
        )
    if not who.is_service:
        raise Forbidden("token_info is for service accounts only")
    return who


async def create_user(store: Store, who: Principal | None, body: CreateUser) -> User:
    """`who` is None for the operator's own command line, which is trusted."""
    if who is not None:
        require_admin(who)
    return await store.insert_user(body)


async def update_user(store: Store, who: Principal | None, username: str, body: UpdateUser) -> User:
    if who is not None:
        require_admin(who)
        if username == who.username and body.is_admin is False:
            raise Conflict("an administrator cannot remove their own admin flag")
    return await store.update_user(username, body.model_dump(exclude_none=True))


async def delete_user(store: Store, who: Principal, username: str) -> None:
    require_admin(who)
    if username == who.username:
        raise Conflict("an administrator cannot delete themselves")
    await store.delete_user(username)


async def list_groups(store: Store, who: Principal) -> list[Group]:
    require_admin(who)
    return await store.list_groups()


async def get_group(store: Store, who: Principal, name: str) -> Group:
    require_admin(who)
    return await store.get_group(name)


async def create_group(store: Store, who: Principal | None, body: CreateGroup) -> Group:
    if who is not None:
        require_admin(who)
    return await store.insert_group(body.name, body.description)


async def delete_group(store: Store, who: Principal, name: str) -> None:
    require_admin(who)
    await store.delete_group(name)


async def add_member(store: Store, who: Principal | None, group: str, username: str) -> None:
    if who is not None:
        require_admin(who)
    await store.add_member(group, username)


async def remove_member(store: Store, who: Principal, group: str, username: str) -> None:
    require_admin(who)
    await store.remove_member(group, username)
