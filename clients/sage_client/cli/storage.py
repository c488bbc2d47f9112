"""`sage storage bucket|permissions ...`: the SAGE storage command line's shapes, kept."""

from __future__ import annotations

from typing import Any

import click

from ..storage import BUCKET_TYPES, GRANTEE_TYPES, PERMISSIONS, PUBLIC_GRANT, Grant
from .common import emit, global_options, print_json, record, run, say, table
from .files import files

BUCKET_COLUMNS = ("id", "name", "type", "owner", "time_created", "time_last_updated")
GRANT_COLUMNS = ("granteeType", "grantee", "permission")
grantee_type = click.Choice(GRANTEE_TYPES, case_sensitive=False)
permission_choice = click.Choice(PERMISSIONS, case_sensitive=False)


@click.group(
    epilog="""\b
Examples:
  sage storage bucket create --datatype training-data --name camera7
  sage storage files upload BUCKET_ID pictures/ --key 2024/
  sage storage files list BUCKET_ID --recursive --all
  sage storage files download BUCKET_ID 2024/pictures/a.jpg --target ./a.jpg
  sage storage permissions add BUCKET_ID USER alice READ
\b
The object store is reached at SAGE_STORE_URL when set, else at SAGE_HOST."""
)
def storage() -> None:
    """The SAGE object store: buckets of training data and models."""


storage.add_command(files)


@storage.group()
def bucket() -> None:
    """Create, show, list, rename and delete buckets."""


@bucket.command("create")
@click.option(
    "--datatype", required=True, type=click.Choice(BUCKET_TYPES), help="What the bucket holds."
)
@click.option("--name", help="A human-readable name.")
@click.option("--public", is_flag=True, help="Readable by everyone (AllUsers READ).")
@global_options
def bucket_create(datatype: str, name: str | None, public: bool) -> None:
    """Create a bucket and print it as JSON (as the SAGE storage client does).

    \b
    Example:
      sage storage bucket create --datatype training-data --name camera7
    """
    created = run(lambda sage: sage.storage.create_bucket(datatype, name, public=public))
    print_json(created)


@bucket.command("show")
@click.argument("bucket_id", metavar="BUCKET_ID")
@global_options
def bucket_show(bucket_id: str) -> None:
    """Show a bucket's properties."""
    found = run(lambda sage: sage.storage.show_bucket(bucket_id))
    emit(found, lambda: record(found, BUCKET_COLUMNS))


@bucket.command("list")
@click.option("--owner", help="Only buckets of this user.")
@click.option("--name", help="Only buckets with this name.")
@global_options
def bucket_list(owner: str | None, name: str | None) -> None:
    """List the buckets you may read: yours, shared with you, public."""
    buckets = run(lambda sage: sage.storage.list_buckets(owner=owner, name=name))
    emit(
        buckets,
        lambda: table(BUCKET_COLUMNS, ([b.get(c) for c in BUCKET_COLUMNS] for b in buckets)),
    )


@bucket.command("rename")
@click.argument("bucket_id", metavar="BUCKET_ID")
@click.argument("new_name")
@global_options
def bucket_rename(bucket_id: str, new_name: str) -> None:
    """Give a bucket a new name."""
    updated = run(lambda sage: sage.storage.rename_bucket(bucket_id, new_name))
    emit(updated, lambda: record(updated, BUCKET_COLUMNS))


@bucket.command("delete")
@click.argument("bucket_id", metavar="BUCKET_ID")
@global_options
def bucket_delete(bucket_id: str) -> None:
    """Delete a bucket with every file and permission in it."""
    answer = run(lambda sage: sage.storage.delete_bucket(bucket_id))
    emit(answer or {"deleted": [bucket_id]}, lambda: say(f"deleted bucket {bucket_id}"))


@storage.group()
def permissions() -> None:
    """Who may read and write a bucket."""


@permissions.command("show")
@click.argument("bucket_id", metavar="BUCKET_ID")
@global_options
def permissions_show(bucket_id: str) -> None:
    """List the grants on a bucket."""
    grants = run(lambda sage: sage.storage.permissions(bucket_id))
    emit(grants, lambda: table(GRANT_COLUMNS, ([g.get(c) for c in GRANT_COLUMNS] for g in grants)))


@permissions.command("add")
@click.argument("bucket_id", metavar="BUCKET_ID")
@click.argument("grantee_type", metavar="GRANTEE_TYPE", type=grantee_type)
@click.argument("grantee")
@click.argument("permission", type=permission_choice)
@global_options
def permissions_add(bucket_id: str, grantee_type: str, grantee: str, permission: str) -> None:
    """Grant PERMISSION on a bucket to a USER or GROUP.

    \b
    Example:
      sage storage permissions add BUCKET_ID USER alice READ
    """
    grant = Grant.model_validate(
        {"granteeType": grantee_type.upper(), "grantee": grantee, "permission": permission.upper()}
    )
    added = run(lambda sage: sage.storage.add_permission(bucket_id, grant))
    _show_grant(added or grant.model_dump())


@permissions.command("public")
@click.argument("bucket_id", metavar="BUCKET_ID")
@global_options
def permissions_public(bucket_id: str) -> None:
    """Make a bucket readable by everyone (GROUP AllUsers READ)."""
    answer = run(lambda sage: sage.storage.make_public(bucket_id))
    _show_grant(answer or PUBLIC_GRANT.model_dump())


@permissions.command("private")
@click.argument("bucket_id", metavar="BUCKET_ID")
@global_options
def permissions_private(bucket_id: str) -> None:
    """Take back public read access (remove GROUP AllUsers)."""
    answer = run(lambda sage: sage.storage.make_private(bucket_id))
    emit(answer or {"deleted": ["GROUP:AllUsers"]}, lambda: say(f"bucket {bucket_id} is private"))


@permissions.command("delete")
@click.argument("bucket_id", metavar="BUCKET_ID")
@click.argument("grantee_type", metavar="GRANTEE_TYPE", type=grantee_type)
@click.argument("grantee")
@click.option(
    "--permission",
    type=permission_choice,
    help="Remove only this permission (default: all of the grantee's).",
)
@global_options
def permissions_delete(
    bucket_id: str, grantee_type: str, grantee: str, permission: str | None
) -> None:
    """Remove a grantee's permissions on a bucket."""
    gtype, perm = grantee_type.upper(), permission.upper() if permission else None
    answer = run(lambda sage: sage.storage.delete_permission(bucket_id, gtype, grantee, perm))
    target = f"{gtype}:{grantee}" + (f":{perm}" if perm else "")
    emit(answer or {"deleted": [target]}, lambda: say(f"removed {target}"))


def _show_grant(grant: dict[str, Any]) -> None:
    emit(grant, lambda: table(GRANT_COLUMNS, [[grant.get(c) for c in GRANT_COLUMNS]]))
