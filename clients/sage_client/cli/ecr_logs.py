"""`sage ecr app logs`: the build log as text, followed live with byte offsets."""

from __future__ import annotations

import codecs
from typing import Any

import click

from ..buildlog import LogTextUnsupported
from ..client import SageClient
from ..ecr import AppId
from .common import emit, global_options, run, say, state
from .ecr_types import APP_ID


@click.command("logs")
@click.argument("app_id", metavar="NS/NAME:VERSION", type=APP_ID)
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the build has finished.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=2.0,
    show_default=True,
    help="Seconds between checks with --follow.",
)
@global_options
def logs(app_id: AppId, follow: bool, interval: float) -> None:
    """Print the current build's log; --follow prints what is added until the build has finished.

    With --json: the JSON answer (where the log is, its last lines, the build's error) instead.
    """
    if state().json:
        _json_logs(app_id, follow, interval)
        return

    async def go(sage: SageClient) -> bool | None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        ended_with_newline = True

        def restart(why: str) -> None:
            nonlocal ended_with_newline
            if not ended_with_newline:
                click.echo("")
            say(f"--- {why}; its log from the top ---", err=True)
            decoder.reset()
            ended_with_newline = True

        complete = False
        try:
            async for chunk in sage.ecr.iter_log_text(
                app_id, follow=follow, interval=interval, on_restart=restart
            ):
                text = decoder.decode(chunk.data)
                if text:
                    click.echo(text, nl=False)
                    ended_with_newline = text.endswith("\n")
                complete = chunk.complete
        except LogTextUnsupported:
            return None
        rest = decoder.decode(b"", final=True)
        if rest or not ended_with_newline:
            click.echo(rest)
        return complete

    finished = run(go)
    if finished is None:
        _json_logs(app_id, follow, interval)  # an ECR from before text logs: its tail
    elif not finished:
        say("(the build has not finished yet: --follow keeps reading)", err=True)


def _json_logs(app_id: AppId, follow: bool, interval: float) -> None:
    """The JSON answer: with --json, or as the tail lines where the ECR has no text form."""
    if not follow:
        found = run(lambda sage: sage.ecr.logs(app_id))
        emit(found, lambda: _print_tail(found, found.get("log_tail") or []))
        return

    async def go(sage: SageClient) -> dict[str, Any]:
        last: dict[str, Any] = {}
        async for item in sage.ecr.follow_logs(app_id, interval=interval):
            if isinstance(item, dict):
                last = item
            elif not state().json:
                say(item)
        return last

    final = run(go)
    emit(final, lambda: _print_tail(final, []))


def _print_tail(answer: dict[str, Any], lines: list[Any]) -> None:
    """The lines, then where the whole log is and the build's error, if any, on stderr."""
    for line in lines:
        say(str(line))
    if answer.get("log_location"):
        say(f"full log: {answer['log_location']}", err=True)
    if answer.get("error"):
        say(f"build error: {answer['error']}", err=True)
    elif not answer.get("finished"):
        say("the build has not finished yet", err=True)
