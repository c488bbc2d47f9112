"""`sage auth ...`: who the token belongs to, and the user's tokens."""

from __future__ import annotations

import click
from rich.panel import Panel
from rich.text import Text

from .common import console, emit, global_options, print_json, record, run, say, state, table

TOKEN_COLUMNS = ("id", "name", "scopes", "expires_at", "created_at", "last_used_at", "revoked")


@click.group(
    epilog="""\b
Examples:
  sage auth whoami
  sage auth token create laptop --scope storage --days 30
  sage auth token list
  sage auth token revoke 42"""
)
def auth() -> None:
    """Your identity and your user tokens."""


@auth.command()
@global_options
def whoami() -> None:
    """Show the user the token belongs to, with groups and scopes."""
    me = run(lambda sage: sage.auth.whoami())
    emit(
        me,
        lambda: record(
            me, ("username", "name", "email", "is_admin", "is_approved", "groups", "scopes")
        ),
    )


@auth.group()
def token() -> None:
    """Create, list and revoke user tokens."""


@token.command(
    "create",
    epilog="""\b
The token goes alone to stdout, the notes to stderr, so this works:
  export SAGE_USER_TOKEN=$(sage auth token create ci --days 7)""",
)
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    metavar="SCOPE",
    help="Limit the token to a scope; repeat for several (default: the server's).",
)
@click.option(
    "--days", type=click.IntRange(min=1), help="Expire after N days (default: the server's)."
)
@global_options
def token_create(name: str, scopes: tuple[str, ...], days: int | None) -> None:
    """Create a token called NAME. Its secret is shown once and never again."""
    created = run(lambda sage: sage.auth.create_token(name, scopes=list(scopes), days=days))
    if state().json:
        print_json(created)
        return
    details = Text.assemble(
        ("New token ", ""),
        (str(created.get("name", name)), "bold"),
        f" (id {created.get('id')}, scopes {', '.join(created.get('scopes') or []) or '-'}, "
        f"expires {created.get('expires_at') or 'never'}).\n",
        ("Copy it now: it is not shown again.", "bold yellow"),
    )
    console(stderr=True).print(Panel(details, expand=False))
    say(str(created.get("token", "")))


@token.command("list")
@global_options
def token_list() -> None:
    """List your tokens (never their secrets)."""
    tokens = run(lambda sage: sage.auth.list_tokens())
    emit(tokens, lambda: table(TOKEN_COLUMNS, ([t.get(c) for c in TOKEN_COLUMNS] for t in tokens)))


@token.command("revoke")
@click.argument("token_id", metavar="ID")
@global_options
def token_revoke(token_id: str) -> None:
    """Revoke the token with this ID; it stops working within seconds."""
    run(lambda sage: sage.auth.revoke_token(token_id))
    emit({"id": token_id, "revoked": True}, lambda: say(f"revoked token {token_id}"))
