"""What every command shares: settings from options and env, running the client, output, errors.

Results go to stdout (JSON with `--json`, tables otherwise); errors are one line on stderr,
`sage: error: ...`, with exit code 1 (2 for usage errors, 130 when interrupted).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..client import SageClient
from ..errors import SageError
from ..http import DEFAULT_HOST, DEFAULT_TIMEOUT

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class Failed(click.ClickException):
    """A command failed: one line on stderr, exit code 1 (or the one given)."""

    def show(self, file: Any = None) -> None:
        click.echo(f"sage: error: {self.format_message()}", err=True)


class Interrupted(Failed):
    exit_code = 130


@dataclass
class State:
    """Options given on the command line; env and defaults fill the rest in `client()`."""

    host: str | None = None
    token: str | None = None
    timeout: float | None = None
    json: bool = False

    def client(self) -> SageClient:
        env = os.environ
        host = self.host or env.get("SAGE_HOST") or DEFAULT_HOST
        # An explicit --host means every service; else the store may have its own URL.
        store_url = None if self.host else (env.get("SAGE_STORE_URL") or None)
        token = self.token or env.get("SAGE_USER_TOKEN") or None
        timeout = self.timeout or _float_env("SAGE_TIMEOUT") or DEFAULT_TIMEOUT
        return SageClient(host, token, store_url=store_url, timeout=timeout)

    @property
    def has_token(self) -> bool:
        return bool(self.token or os.environ.get("SAGE_USER_TOKEN"))


def _float_env(name: str) -> float | None:
    value = os.environ.get(name)
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise Failed(f"{name} must be a number of seconds, got {value!r}") from None


def state() -> State:
    return click.get_current_context().ensure_object(State)


def _kept(attr: str, *decls: str, **kw: Any) -> Callable[[F], F]:
    """An option that only sets `State.<attr>`, so it may stand on the root or on a command."""

    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        if value not in (None, False):
            setattr(ctx.ensure_object(State), attr, value)
        return value

    return click.option(*decls, expose_value=False, callback=callback, **kw)


def global_options(f: F) -> F:
    """`--json`, `--host`, `--token`, `--timeout`, accepted on the root and on every command."""
    options = [
        _kept(
            "json", "--json", "json_", is_flag=True, help="Print machine-readable JSON on stdout."
        ),
        _kept(
            "host",
            "--host",
            metavar="URL",
            help="Gateway URL [env SAGE_HOST; default http://localhost:8080].",
        ),
        _kept("token", "--token", metavar="TOKEN", help="User token [env SAGE_USER_TOKEN]."),
        _kept(
            "timeout",
            "--timeout",
            type=click.FloatRange(min=0.01),
            metavar="SECONDS",
            help="Seconds to wait for a connection or an answer [env SAGE_TIMEOUT; 30].",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def run(action: Callable[[SageClient], Awaitable[T]]) -> T:
    """Run one async action with a client, turning every failure into one error line."""
    st = state()

    async def go() -> T:
        async with st.client() as sage:
            return await action(sage)

    try:
        return asyncio.run(go())
    except SageError as exc:
        message = str(exc)
        if exc.status == 401 and not st.has_token:
            message += "; set SAGE_USER_TOKEN or pass --token"
        raise Failed(message) from None
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        raise Failed(f"{where}{exc.strerror or exc}") from None
    except KeyboardInterrupt:
        raise Interrupted("interrupted") from None


# -- output ---------------------------------------------------------------------------------------


def console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 200
    return Console(file=stream, width=width, highlight=False, soft_wrap=False, stderr=stderr)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def say(message: str, *, err: bool = False) -> None:
    click.echo(message, err=err)


def _cell(value: Any) -> Text:
    if value is None:
        return Text("")
    if isinstance(value, bool):
        return Text("yes" if value else "no")
    if isinstance(value, list | tuple):
        return Text(", ".join(str(v) for v in value))
    if isinstance(value, dict):
        return Text(json.dumps(value, default=str))
    return Text(str(value))


def table(
    columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None
) -> None:
    grid = Table(*columns, title=title, header_style="bold", show_edge=False)
    for row in rows:
        grid.add_row(*(_cell(v) for v in row))
    console().print(grid)


def record(data: dict[str, Any], order: Sequence[str] = ()) -> None:
    """One object as a two-column table, the named fields first, empty ones left out."""
    keys = [k for k in order if k in data] + [k for k in data if k not in order]
    keys = [k for k in keys if data[k] not in (None, "", [], {})]
    grid = Table(show_header=False, show_edge=False, box=None, padding=(0, 2, 0, 0))
    grid.add_column(style="bold")
    grid.add_column()
    for key in keys:
        grid.add_row(Text(key), _cell(data[key]))
    console().print(grid)


def emit(data: Any, human: Callable[[], None]) -> None:
    """JSON with `--json`, else the human rendering."""
    if state().json:
        print_json(data)
    else:
        human()


def human_size(size: Any) -> str:
    if not isinstance(size, int | float):
        return "" if size is None else str(size)
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(size)
