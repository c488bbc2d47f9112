"""The `sage` command line: auth, storage and ECR commands on top of `SageClient`."""

from __future__ import annotations

import os
import sys

import click

from .. import __version__
from .auth import auth
from .common import State, global_options
from .ecr import ecr
from .storage import storage


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="""\b
Environment:
  SAGE_HOST        gateway URL (default http://localhost:8080)
  SAGE_USER_TOKEN  your user token, sent as "Authorization: sage <token>"
  SAGE_STORE_URL   object store URL, when it is not behind SAGE_HOST
  SAGE_TIMEOUT     seconds to wait for a connection or an answer (default 30)
\b
Examples:
  export SAGE_HOST=http://localhost:8080 SAGE_USER_TOKEN=...
  sage auth whoami
  sage storage bucket create --datatype training-data --name camera7
  sage storage files upload BUCKET_ID pictures/
  sage ecr app submit sage.yaml --wait
\b
Every command takes --json for machine-readable output. Errors are one line on
stderr; the exit code is 1 (2 for a usage error).""",
)
@click.version_option(__version__, prog_name="sage")
@global_options
@click.pass_context
def cli(ctx: click.Context) -> None:
    """The SAGE command line: tokens, the object store and the Edge Code Repository."""
    ctx.ensure_object(State)


cli.add_command(auth)
cli.add_command(storage)
cli.add_command(ecr)


def main() -> None:
    """Entry point of `sage`: never a traceback, unless SAGE_DEBUG is set."""
    try:
        cli.main(prog_name="sage")
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        if os.environ.get("SAGE_DEBUG"):
            raise
        click.echo(
            f"sage: error: unexpected {type(exc).__name__}: {exc} (SAGE_DEBUG=1 shows more)",
            err=True,
        )
        sys.exit(1)
