"""`sage ecr ...`: submit apps and follow them through build, profile and review."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import yaml

from ..client import SageClient
from ..ecr import FAILED_STATES, AppId
from ..errors import SageError
from ..storage import GRANTEE_TYPES, PERMISSIONS
from .common import Failed, emit, global_options, print_json, record, run, say, state, table

APP_COLUMNS = ("id", "description", "owner", "state", "time_created")
GRANT_COLUMNS = ("resourceName", "granteeType", "grantee", "permission")


class AppIdType(click.ParamType):
    name = "NS/NAME:VERSION"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> AppId:
        if isinstance(value, AppId):
            return value
        try:
            return AppId.parse(str(value))
        except SageError as exc:
            self.fail(exc.message, param, ctx)


APP_ID = AppIdType()


@click.group(
    epilog="""\b
Examples:
  sage ecr app submit sage.yaml --wait
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


def _read_spec(path: Path) -> bytes:
    """The file as it is, after checking locally that it parses (a clearer error, sooner)."""
    body = path.read_bytes()
    try:
        yaml.safe_load(body)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise Failed(f"{path} is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return body


def _print_entry(entry: dict[str, Any]) -> None:
    parts = [str(entry.get("time") or ""), str(entry.get("state") or "?")]
    if entry.get("cause"):
        parts.append(f"({entry['cause']})")
    say("  ".join(p for p in parts if p), err=state().json)


@app.command("submit")
@click.argument(
    "spec", metavar="SAGE_YAML", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--wait", is_flag=True, help="Follow the pipeline state by state until its outcome.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=2.0,
    show_default=True,
    help="Seconds between status checks with --wait.",
)
@global_options
def submit(spec: Path, wait: bool, interval: float) -> None:
    """Submit an app version described by SAGE_YAML (YAML or JSON).

    With --wait the exit code is 0 once published or in review, 1 when the build or profile
    failed or the version was rejected.
    """
    body = _read_spec(spec)
    kind = "application/json" if spec.suffix.lower() == ".json" else "application/yaml"

    async def go(sage: SageClient) -> tuple[dict[str, Any], dict[str, Any] | None]:
        submitted = await sage.ecr.submit(body, content_type=kind)
        if not wait:
            return submitted, None
        if not state().json:
            say(f"submitted {submitted.get('id')}; following its pipeline")
        app_id = AppId.parse(str(submitted.get("id")))
        return submitted, await sage.ecr.wait(app_id, interval=interval, on_state=_print_entry)

    submitted, status = run(go)
    if status is None:
        emit(submitted, lambda: say(f"submitted {submitted.get('id')}"))
        return
    if state().json:
        print_json({"app": submitted, "status": status})
    final = status.get("state")
    if final in FAILED_STATES:
        raise Failed(f"{submitted.get('id')} ended {final}")
    if not state().json:
        say(
            f"{submitted.get('id')}: {final}"
            + (" (waiting for a reviewer)" if final == "in_review" else "")
        )


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
    filters = {"owner": owner, "public": public, "shared": shared}

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

    emit(found, human)


@app.command("delete")
@click.argument("app_id", metavar="NS/NAME:VERSION", type=APP_ID)
@global_options
def delete(app_id: AppId) -> None:
    """Delete an app version that is not frozen."""
    answer = run(lambda sage: sage.ecr.delete(app_id))
    emit(answer or {"deleted": [str(app_id)]}, lambda: say(f"deleted {app_id}"))


@app.command("logs")
@click.argument("app_id", metavar="NS/NAME:VERSION", type=APP_ID)
@click.option("--follow", "-f", is_flag=True, help="Keep printing as the build writes.")
@global_options
def logs(app_id: AppId, follow: bool) -> None:
    """Print the build log."""
    if not follow:
        text = run(lambda sage: sage.ecr.logs(app_id))
        emit({"id": str(app_id), "log": text}, lambda: click.echo(text, nl=False))
        return

    async def go(sage: SageClient) -> None:
        async for chunk in sage.ecr.follow_logs(app_id):
            sys.stdout.write(chunk)
            sys.stdout.flush()

    run(go)


@app.command("profile")
@click.argument("app_id", metavar="NS/NAME:VERSION", type=APP_ID)
@global_options
def profile(app_id: AppId) -> None:
    """Show the profile: measured resources and recommended limits."""
    found = run(lambda sage: sage.ecr.profile(app_id))
    emit(found, lambda: record(found, ("status", "recommended_limits", "smallest_period")))


@ecr.group()
def review() -> None:
    """Approve or reject versions waiting in review (reviewers only)."""


def _decide(decision: str, app_id: AppId, comment: str) -> None:
    answer = run(lambda sage: sage.ecr.review(app_id, decision, comment))
    past = "approved" if decision == "approve" else "rejected"
    emit(answer, lambda: say(f"{past} {app_id}"))


@review.command("approve")
@click.argument("app_id", metavar="NS/NAME:VERSION", type=APP_ID)
@click.option("--comment", default="", help="Why; shown to the submitter.")
@global_options
def approve(app_id: AppId, comment: str) -> None:
    """Approve and publish a version."""
    _decide("approve", app_id, comment)


@review.command("reject")
@click.argument("app_id", metavar="NS/NAME:VERSION", type=APP_ID)
@click.option("--comment", required=True, help="Why; shown to the submitter.")
@global_options
def reject(app_id: AppId, comment: str) -> None:
    """Reject a version, saying why."""
    _decide("reject", app_id, comment)


@ecr.group()
def namespace() -> None:
    """List and create namespaces."""


@namespace.command("list")
@global_options
def namespace_list() -> None:
    """List the namespaces you can see."""
    found = run(lambda sage: sage.ecr.namespaces())
    cols = ("id", "owner_id", "type")
    emit(found, lambda: table(cols, ([n.get(c) for c in cols] for n in found)))


@namespace.command("create")
@click.argument("name")
@global_options
def namespace_create(name: str) -> None:
    """Claim a namespace; you get FULL_CONTROL of it."""
    created = run(lambda sage: sage.ecr.create_namespace(name))
    emit(created, lambda: say(f"created namespace {name}"))


@ecr.group()
def permissions() -> None:
    """Who may read and write a namespace or repository."""


@permissions.command("show")
@click.argument("resource", metavar="NAMESPACE[/REPOSITORY]")
@global_options
def permissions_show(resource: str) -> None:
    """List the grants on a namespace or repository."""
    grants = run(lambda sage: sage.ecr.permissions(resource))
    emit(grants, lambda: table(GRANT_COLUMNS, ([g.get(c) for c in GRANT_COLUMNS] for g in grants)))


def _grant_args(f: Any) -> Any:
    f = click.argument("permission", type=click.Choice(PERMISSIONS, case_sensitive=False))(f)
    f = click.argument("grantee")(f)
    f = click.argument(
        "grantee_type",
        metavar="GRANTEE_TYPE",
        type=click.Choice(GRANTEE_TYPES, case_sensitive=False),
    )(f)
    return click.argument("resource", metavar="NAMESPACE[/REPOSITORY]")(f)


def _change(
    operation: str, resource: str, grantee_type: str, grantee: str, permission: str
) -> None:
    answer = run(
        lambda sage: sage.ecr.change_permission(
            resource, operation, grantee_type.upper(), grantee, permission.upper()
        )
    )
    done = "granted" if operation == "add" else "removed"
    emit(
        answer,
        lambda: say(
            f"{done} {permission.upper()} on {resource} to {grantee_type.upper()} {grantee}"
        ),
    )


@permissions.command("add")
@_grant_args
@global_options
def permissions_add(resource: str, grantee_type: str, grantee: str, permission: str) -> None:
    """Grant PERMISSION to a USER or GROUP (GROUP AllUsers READ makes it public)."""
    _change("add", resource, grantee_type, grantee, permission)


@permissions.command("delete")
@_grant_args
@global_options
def permissions_delete(resource: str, grantee_type: str, grantee: str, permission: str) -> None:
    """Remove PERMISSION from a USER or GROUP."""
    _change("delete", resource, grantee_type, grantee, permission)
