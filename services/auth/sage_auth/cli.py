"""`sage-admin`: the operator's commands, for a first login where no identity provider is set up.

It talks to the auth database directly (same `SAGE_AUTH_*` settings as the service), applies the
migrations first, and goes through the same service layer as the HTTP API.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from uuid import UUID

import asyncpg
import click

from sage_common import db
from sage_common.errors import Conflict, ProblemError

from . import service
from .app import MIGRATIONS
from .config import Config
from .models import SCOPE_RE, CreateGroup, CreateUser, UpdateUser, User, valid_name
from .store import Store

T = TypeVar("T")


def _run(work: Callable[[Store, Config], Awaitable[T]]) -> T:
    """Open the database, migrate, do `work`, close; errors become one line and exit status 1."""

    async def go() -> T:
        config = Config()
        url = config.database_url.get_secret_value()
        async with await db.create_pool(url, config.db_schema, min_size=1, max_size=2) as pool:
            await db.migrate(pool, config.db_schema, MIGRATIONS)
            return await work(Store(pool), config)

    try:
        return asyncio.run(go())
    except ProblemError as exc:
        raise click.ClickException(exc.detail) from None
    except (OSError, asyncpg.PostgresError) as exc:
        raise click.ClickException(
            f"cannot use the auth database (SAGE_AUTH_DATABASE_URL): {type(exc).__name__}"
        ) from None


def _name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not valid_name(value):
        raise click.BadParameter("lowercase letters, digits, '_', '.', '-'; 2-64; a letter first")
    return value


def _scopes(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    bad = [s for s in value if not re.match(SCOPE_RE, s)]
    if bad:
        raise click.BadParameter(f"not a scope: {', '.join(bad)}")
    return value


def _describe(user: User) -> str:
    flags = [f for f, on in (("admin", user.is_admin), ("approved", user.is_approved)) if on]
    return f"{user.username}\t{','.join(flags) or '-'}\t{','.join(user.groups) or '-'}"


@click.group()
def cli() -> None:
    """Operator commands of the SAGE auth service (they use its database directly)."""


@cli.group()
def user() -> None:
    """Users: add, list, set flags, delete."""


@user.command("add")
@click.argument("username", callback=_name)
@click.option("--admin/--no-admin", default=None, help="administrator (default: no)")
@click.option("--approved/--no-approved", default=None, help="approved to publish (default: no)")
@click.option("--name", default=None, help="full name")
@click.option("--email", default=None)
def user_add(
    username: str, admin: bool | None, approved: bool | None, name: str | None, email: str | None
) -> None:
    """Add a user; for an existing user, set the flags given (and say so)."""

    async def work(store: Store, config: Config) -> User:
        changes = UpdateUser(name=name, email=email, is_admin=admin, is_approved=approved)
        body = CreateUser(username=username, **changes.model_dump(exclude_none=True))
        try:
            return await service.create_user(store, None, body)
        except Conflict:
            click.echo(f"user {username} exists already; updating what was given", err=True)
            return await service.update_user(store, None, username, changes)

    click.echo(_describe(_run(work)))


@user.command("set")
@click.argument("username")
@click.option("--admin/--no-admin", default=None)
@click.option("--approved/--no-approved", default=None)
@click.option("--name", default=None)
@click.option("--email", default=None)
def user_set(
    username: str, admin: bool | None, approved: bool | None, name: str | None, email: str | None
) -> None:
    """Change a user's flags, name or email."""
    changes = UpdateUser(name=name, email=email, is_admin=admin, is_approved=approved)
    updated = _run(lambda store, _: service.update_user(store, None, username, changes))
    click.echo(_describe(updated))


@user.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table")
def user_list(as_json: bool) -> None:
    """Every user: name, flags, groups."""
    users = _run(lambda store, _: store.list_users())
    if as_json:
        click.echo(json.dumps([u.model_dump(mode="json") for u in users], indent=2))
    else:
        for u in users:
            click.echo(_describe(u))


@user.command("delete")
@click.argument("username")
def user_delete(username: str) -> None:
    """Delete a user with their tokens and memberships."""
    _run(lambda store, _: store.delete_user(username))
    click.echo(f"deleted user {username}", err=True)


@cli.group()
def group() -> None:
    """Groups: add, add-member, list."""


@group.command("add")
@click.argument("name", callback=_name)
@click.option("--description", default="")
def group_add(name: str, description: str) -> None:
    """Add a group (an existing one is left as it is)."""

    async def work(store: Store, config: Config) -> None:
        try:
            await service.create_group(store, None, CreateGroup(name=name, description=description))
        except Conflict:
            click.echo(f"group {name} exists already", err=True)

    _run(work)
    click.echo(name)


@group.command("add-member")
@click.argument("name")
@click.argument("username")
def group_add_member(name: str, username: str) -> None:
    """Put a user in a group."""
    _run(lambda store, _: service.add_member(store, None, name, username))
    click.echo(f"{username} is in {name}", err=True)


@group.command("list")
def group_list() -> None:
    """Every group with its members."""
    for g in _run(lambda store, _: store.list_groups()):
        click.echo(f"{g.name}\t{','.join(g.members) or '-'}")


@cli.group()
def token() -> None:
    """User tokens: add (prints only the token), list, revoke."""


@token.command("add")
@click.argument("username")
@click.option("--name", "token_name", default="sage-admin", help="what the token is for")
@click.option("--scope", "scopes", multiple=True, callback=_scopes, help="repeatable; default all")
@click.option("--days", type=click.IntRange(min=1), default=None, help="lifetime in days")
def token_add(username: str, token_name: str, scopes: tuple[str, ...], days: int | None) -> None:
    """Make a token for USERNAME and print it, and nothing else, on stdout."""

    async def work(store: Store, config: Config) -> str:
        expires_at = service.token_expiry(days, config)
        wanted = list(scopes) or ["all"]  # an unknown user is refused by the insert (NotFound)
        new = await service.issue_token(store, username, token_name, wanted, expires_at=expires_at)
        return new.token

    click.echo(_run(work))


@token.command("list")
@click.argument("username")
def token_list(username: str) -> None:
    """A user's tokens (never the tokens themselves)."""
    for t in _run(lambda store, _: store.list_tokens(username)):
        state = "revoked" if t.revoked else f"expires {t.expires_at:%Y-%m-%d}"
        click.echo(f"{t.id}\t{t.name}\t{' '.join(t.scopes)}\t{state}")


@token.command("revoke")
@click.argument("token_id", type=click.UUID)
def token_revoke(token_id: UUID) -> None:
    """Revoke a token by its id."""
    if _run(lambda store, _: store.revoke_token(token_id)) is None:
        raise click.ClickException("no such live token")
    click.echo(f"revoked {token_id}", err=True)


def main(argv: list[str] | None = None) -> Any:
    return cli.main(args=argv, prog_name="sage-admin")


if __name__ == "__main__":
    sys.exit(main())
