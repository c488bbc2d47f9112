"""`sage ecr ...`: submit apps and follow them through build, profile and review."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..client import SageClient
from ..ecr import FAILED_STATES, AppId, EcrAPI
from .common import Failed, emit, global_options, print_json, record, run, say, state, table
from .ecr_access import namespace, permissions, review
from .ecr_logs import logs
from .ecr_profile import profile
from .ecr_source import (
    is_repository,
    read_file,
    read_repository,
    refuse_credentials,
    split_ref,
)
from .ecr_types import APP_ID

APP_COLUMNS = ("id", "description", "owner", "state", "time_created")


@click.group(
    epilog="""\b
Examples:
  sage ecr app submit sage.yaml --wait
  sage ecr app submit https://github.com/myteam/detector@main --namespace myteam
  sage ecr app rebuild myteam/detector:1.0.0 --wait
  sage ecr app list myteam --all
  sage ecr app status myteam/detector:1.0.0
  sage ecr app logs myteam/detector:1.0.0 --follow
  sage ecr review approve myteam/detector:1.0.0 --comment "looks good"
"""
)
def ecr() -> None:
    """The Edge Code Repository: apps, review, namespaces, permissions."""


@ecr.group()
def app() -> None:
    """Submit, inspect and delete app versions."""


def _why(status: dict[str, Any]) -> str | None:
    """Why the version failed, from the status answer: the build's error or the profile's reason."""
    if status.get("state") == "build_failed":
        build = status.get("build") or {}
        if build.get("error"):
            return f"{build.get('error_class') or 'build failed'}: {build['error']}"
    if status.get("state") == "profile_failed":
        reason = (status.get("profile") or {}).get("reason")
        if reason:
            return str(reason)
    return None


def _print_entry(entry: dict[str, Any]) -> None:
    parts = [str(entry.get("time") or ""), EcrAPI.entry_state(entry)]
    if entry.get("cause"):
        parts.append(f"({entry['cause']})")
    say("  ".join(p for p in parts if p), err=state().json)


def _outcome(ident: str, status: dict[str, Any]) -> None:
    """The end of a `--wait`: exit 1 with the reason when the version failed, else its state."""
    final = status.get("state")
    if final in FAILED_STATES:
        why = _why(status)
        raise Failed(f"{ident} ended {final}" + (f": {why}" if why else ""))
    if not state().json:
        say(f"{ident}: {final}" + (" (waiting for a reviewer)" if final == "in_review" else ""))


_wait = click.option(
    "--wait", is_flag=True, help="Follow the pipeline state by state until its outcome."
)
_interval = click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=2.0,
    show_default=True,
    help="Seconds between status checks with --wait.",
)


@app.command("submit")
@click.argument("source", metavar="[SAGE_YAML | REPOSITORY_URL[@BRANCH]]", required=False)
@click.option("--namespace", help="The namespace, where the description has none (or another).")
@click.option("--url", help="The source repository's URL, where the description has none.")
@click.option("--branch", help="The branch to build (and to read the description from).")
@click.option("--tag", help="The tag to build, instead of a branch.")
@click.option("--force", is_flag=True, help="Replace the version if it exists and is not frozen.")
@_wait
@_interval
@global_options
def submit(
    source: str | None,
    namespace: str | None,
    url: str | None,
    branch: str | None,
    tag: str | None,
    force: bool,
    wait: bool,
    interval: float,
) -> None:
    """Submit an app version described by SAGE_YAML (YAML or JSON; default ./sage.yaml), or by
    the sage.yaml (or sage.json) at the top of a git repository, cloned here:
    `sage ecr app submit https://github.com/org/repo@main`.

    With --wait the exit code is 0 once published or in review, 1 when the build or profile
    failed or the version was rejected.
    """
    if branch and tag:
        raise click.UsageError("give --branch or --tag, not both")
    refuse_credentials(url)
    if source is not None and is_repository(source):
        refuse_credentials(source)
        repo, ref = split_ref(source)
        described = read_repository(repo, ref or branch or tag)
        url = url or described.url
        if not tag:
            branch = ref or branch or described.branch
    else:
        path = Path(source or "sage.yaml")
        if source is None and not path.exists() and Path("sage.json").exists():
            path = Path("sage.json")
        if not path.is_file():
            raise click.BadParameter(f"{path} is not a file", param_hint="SAGE_YAML")
        described = read_file(path)
    fields = {"namespace": namespace, "url": url, "branch": branch, "tag": tag}

    async def go(sage: SageClient) -> tuple[dict[str, Any], dict[str, Any] | None]:
        submitted = await sage.ecr.submit(
            described.body, content_type=described.content_type, force=force, **fields
        )
        for warning in submitted.get("warnings") or []:
            say(f"warning: {warning}", err=True)
        if not wait:
            return submitted, None
        if submitted.get("state") == "registered":
            raise Failed(_submitted_line(submitted) + ": nothing to wait for")
        if not state().json:
            say(f"submitted {submitted.get('id')}; following its pipeline")
        app_id = AppId.parse(str(submitted.get("id")))
        return submitted, await sage.ecr.wait(app_id, interval=interval, on_state=_print_entry)

    submitted, status = run(go)
    if status is None:
        emit(submitted, lambda: say(_submitted_line(submitted)))
        return
    if state().json:
        print_json({"app": submitted, "status": status})
    _outcome(str(submitted.get("id")), status)


def _submitted_line(app: dict[str, Any]) -> str:
    if app.get("state") == "registered":
        return (
            f"registered {app.get('id')} (not built: your account is not approved yet; "
            "an administrator approves it)"
        )
    return f"submitted {app.get('id')}"


@app.command("rebuild")
@click.argument("app_id", metavar="NS/NAME:VERSION", type=APP_ID)
@_wait
@_interval
@global_options
def rebuild(app_id: AppId, wait: bool, interval: float) -> None:
    """Build a version again from its source (one not yet published).

    A build still under way is cancelled. With --wait it follows the new build as submit --wait
    does: exit code 0 once published or in review, 1 when it failed or was rejected.
    """

    async def go(sage: SageClient) -> tuple[dict[str, Any], dict[str, Any] | None]:
        started = await sage.ecr.rebuild(app_id)
        if not wait:
            return started, None
        number = started.get("build_number")
        if not state().json:
            say(f"rebuilding {app_id} (build {number}); following its pipeline")
        status = await sage.ecr.wait(
            app_id,
            interval=interval,
            on_state=_print_entry,
            build_number=None if number is None else int(number),
        )
        return started, status

    started, status = run(go)
    if status is None:
        emit(started, lambda: say(f"rebuilding {app_id} (build {started.get('build_number')})"))
        return
    if state().json:
        print_json({"build": started, "status": status})
    _outcome(str(app_id), status)


@app.command("list")
@click.argument("scope", metavar="[NAMESPACE[/REPOSITORY]]", required=False)
@click.option("--owner", help="Only apps of this user.")
@click.option("--public", is_flag=True, help="Only public apps.")
@click.option("--shared", is_flag=True, help="Only apps shared with you.")
@click.option("--limit", type=click.IntRange(1, 1000), help="Apps per page.")
@click.option("--all", "all_pages", is_flag=True, help="Follow every page to the end.")
@global_options
def list_apps(
    scope: str | None,
    owner: str | None,
    public: bool,
    shared: bool,
    limit: int | None,
    all_pages: bool,
) -> None:
    """List app versions, newest pages first as the server orders them."""
    ns, _, name = (scope or "").partition("/")
    filters: dict[str, Any] = {"owner": owner, "public": public, "shared": shared}

    async def go(sage: SageClient) -> Any:
        if all_pages:
            return [
                a
                async for a in sage.ecr.iter_apps(ns or None, name or None, limit=limit, **filters)
            ]
        return await sage.ecr.list_apps(ns or None, name or None, limit=limit, **filters)

    answer = run(go)
    apps = answer if isinstance(answer, list) else answer.get("data") or []
    emit(answer, lambda: table(APP_COLUMNS, ([a.get(c) for c in APP_COLUMNS] for a in apps)))
    token = (
        None
        if isinstance(answer, list)
        else (answer.get("pagination") or {}).get("continuationToken")
    )
    if token and not state().json:
        say("more apps: pass --all", err=True)


@app.command("show")
@click.argument("app_id", metavar="NS/NAME:VERSION", type=APP_ID)
@global_options
def show(app_id: AppId) -> None:
    """Show an app version's description."""
    found = run(lambda sage: sage.ecr.show(app_id))
    emit(found, lambda: record(found, ("id", "description", "owner", "source", "frozen")))


@app.command("status")
@click.argument("app_id", metavar="NS/NAME:VERSION", type=APP_ID)
@global_options
def status(app_id: AppId) -> None:
    """Show where a version is in the pipeline, with its history."""
    found = run(lambda sage: sage.ecr.status(app_id))

    def human() -> None:
        say(f"{app_id}: {found.get('state')}")
        for entry in found.get("history") or []:
            _print_entry(entry)
        why = _why(found)
        if why:
            say(f"why: {why}")

    emit(found, human)


@app.command("delete")
@click.argument("app_id", metavar="NS/NAME:VERSION", type=APP_ID)
@global_options
def delete(app_id: AppId) -> None:
    """Delete an app version that is not frozen."""
    answer = run(lambda sage: sage.ecr.delete(app_id))
    emit(answer or {"deleted": [str(app_id)]}, lambda: say(f"deleted {app_id}"))


app.add_command(logs)
app.add_command(profile)

ecr.add_command(review)
ecr.add_command(namespace)
ecr.add_command(permissions)
