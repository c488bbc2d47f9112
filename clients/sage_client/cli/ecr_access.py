"""`sage ecr review|namespace|permissions ...`: the reviewer's and the owner's commands."""

from __future__ import annotations

from typing import Any

import click

from ..ecr import AppId
from ..storage import GRANTEE_TYPES, PERMISSIONS
from .common import emit, global_options, run, say, table
from .ecr_types import APP_ID

GRANT_COLUMNS = ("resourceName", "granteeType", "grantee", "permission")


@click.group()
def review() -> None:
    """Approve or reject versions waiting in review (reviewers only)."""


def _decide(decision: str, app_id: AppId, comment: str) -> None:
    answer = run(lambda sage: sage.ecr.review(app_id, decision, comment))
    past = "approved" if decision == "approve" else "rejected"
    emit(answer or {"id": str(app_id), "decision": decision}, lambda: say(f"{past} {app_id}"))


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


@click.group()
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
    emit(created or {"id": name}, lambda: say(f"created namespace {name}"))


@click.group()
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
    body = {
        "operation": operation,
        "granteeType": grantee_type.upper(),
        "grantee": grantee,
        "permission": permission.upper(),
    }
    emit(
        answer or body,
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
