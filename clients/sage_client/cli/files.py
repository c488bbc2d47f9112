"""`sage storage files ...`: upload, download, list and delete the files of a bucket."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..client import SageClient
from ..errors import SageError
from ..retry import RetryPolicy
from ..transfer import UploadReport, plan_upload
from .common import Failed, console, emit, global_options, human_size, run, say, table
from .progress import TransferBars, want_bars

progress_option = click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bars on stderr [default: when stderr is a terminal].",
)
retries_option = click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=4,
    show_default=True,
    help="Retries after a 5xx answer or a broken connection, with back-off.",
)


@click.group()
def files() -> None:
    """Upload, download, list and delete the files of a bucket."""


@files.command(
    "upload",
    epilog="""\b
Examples:
  sage storage files upload BUCKET_ID camera_picture1.jpg     # -> /camera_picture1.jpg
  sage storage files upload BUCKET_ID a.jpg --key day1/a.jpg  # -> /day1/a.jpg
  sage storage files upload BUCKET_ID pics/ m.pt --key v2/   # -> /v2/pics/..., /v2/m.pt""",
)
@click.argument("bucket_id", metavar="BUCKET_ID")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--key", default="", help="Target key; ending in '/' it is a folder (default: the root)."
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Files uploaded at the same time.",
)
@retries_option
@progress_option
@global_options
def upload(
    bucket_id: str,
    paths: tuple[Path, ...],
    key: str,
    concurrency: int,
    retries: int,
    progress: bool | None,
) -> None:
    """Upload files and directories (recursively) into a bucket."""

    async def go(sage: SageClient) -> UploadReport:
        plan = plan_upload(list(paths), key)
        total = sum(item.size for item in plan)
        with TransferBars(want_bars(progress), total, files=len(plan)) as bars:
            return await sage.storage.upload_plan(
                bucket_id,
                plan,
                concurrency=concurrency,
                observer=bars,
                retry=RetryPolicy(attempts=retries + 1),
            )

    report = run(go)
    uploaded = [
        {"key": r.answer.get("key", "/" + r.key), "size": r.size, "sha256": r.sha256}
        for r in report.uploaded
    ]
    failed = [
        {
            "key": "/" + f.key,
            "path": str(f.path),
            "status": f.error.status,
            "error": f.error.message,
        }
        for f in report.failed
    ]
    summary: dict[str, Any] = {
        "bucket-id": bucket_id,
        "files_uploaded": len(uploaded),
        "files": uploaded,
        "failed": failed,
    }

    def human() -> None:
        table(
            ("key", "size", "sha256"),
            ([u["key"], human_size(u["size"]), u["sha256"][:16]] for u in uploaded),
        )
        total = human_size(sum(u["size"] for u in uploaded))
        say(f"uploaded {len(uploaded)} file(s), {total}, to bucket {bucket_id}")

    emit(summary, human)
    if failed:
        raise Failed(f"{len(failed)} of {len(failed) + len(uploaded)} files failed to upload")


@files.command("download")
@click.argument("bucket_id", metavar="BUCKET_ID")
@click.argument("key")
@click.option(
    "--target",
    type=click.Path(path_type=Path),
    help="File or directory to write to (default: the key's file name, here).",
)
@click.option("--force", is_flag=True, help="Overwrite the target if it exists.")
@retries_option
@progress_option
@global_options
def download(
    bucket_id: str, key: str, target: Path | None, force: bool, retries: int, progress: bool | None
) -> None:
    """Download one file. It is written to TARGET.part and renamed when complete.

    \b
    Example:
      sage storage files download BUCKET_ID day1/first.jpg --target pictures/
    """

    async def go(sage: SageClient) -> Path:
        with TransferBars(want_bars(progress)) as bars:
            return await sage.storage.download(
                bucket_id,
                key,
                target,
                force=force,
                progress=bars.update,
                retry=RetryPolicy(attempts=retries + 1),
            )

    path = run(go)
    size = path.stat().st_size
    emit(
        {"bucket-id": bucket_id, "key": "/" + key.lstrip("/"), "path": str(path), "size": size},
        lambda: say(f"downloaded /{key.lstrip('/')} to {path} ({human_size(size)})"),
    )


@files.command("list")
@click.argument("bucket_id", metavar="BUCKET_ID")
@click.option("--prefix", default="", help="List under this folder.")
@click.option("--recursive", is_flag=True, help="Every file below, not only one level.")
@click.option("--limit", type=click.IntRange(min=1), help="At most N entries per page.")
@click.option("--all", "all_pages", is_flag=True, help="Follow every page to the end.")
@click.option("--continuation-token", help="Start at this page (from NextContinuationToken).")
@global_options
def list_files(
    bucket_id: str,
    prefix: str,
    recursive: bool,
    limit: int | None,
    all_pages: bool,
    continuation_token: str | None,
) -> None:
    """List the files and folders of a bucket.

    \b
    Examples:
      sage storage files list BUCKET_ID
      sage storage files list BUCKET_ID --prefix day1 --recursive --all --json
    """

    async def go(sage: SageClient) -> dict[str, Any]:
        if all_pages and not continuation_token:
            return await sage.storage.list_all_objects(
                bucket_id, prefix, recursive=recursive, limit=limit
            )
        return await sage.storage.list_objects(
            bucket_id,
            prefix,
            recursive=recursive,
            limit=limit,
            continuation_token=continuation_token,
        )

    listing = run(go)
    emit(listing, lambda: _print_listing(listing))


def _print_listing(listing: dict[str, Any]) -> None:
    rows: list[list[Any]] = [[p.get("Prefix"), "", ""] for p in listing.get("CommonPrefixes") or []]
    rows += [
        [o.get("Key"), human_size(o.get("Size")), o.get("LastModified")]
        for o in listing.get("Contents") or []
    ]
    table(("key", "size", "last modified"), rows)
    if listing.get("IsTruncated"):
        console(stderr=True).print(
            "more entries: pass --all, or --continuation-token "
            f"{listing.get('NextContinuationToken')}",
            markup=False,
        )


@files.command("delete")
@click.argument("bucket_id", metavar="BUCKET_ID")
@click.argument("keys", nargs=-1, required=True)
@global_options
def delete(bucket_id: str, keys: tuple[str, ...]) -> None:
    """Delete files by key (never the bucket itself)."""
    if any(not k.strip("/") for k in keys):
        raise click.BadParameter("an empty key names no file", param_hint="KEY")

    async def go(sage: SageClient) -> list[str]:
        deleted: list[str] = []
        for k in keys:
            try:
                await sage.storage.delete_object(bucket_id, k)
            except SageError as exc:
                done = f" (deleted before it: {', '.join(deleted)})" if deleted else ""
                exc.message = f"/{k.lstrip('/')}: {exc.message}{done}"
                raise
            deleted.append("/" + k.lstrip("/"))
        return deleted

    deleted = run(go)
    emit(
        {"bucket-id": bucket_id, "deleted": deleted},
        lambda: say("\n".join(f"deleted {k}" for k in deleted)),
    )
