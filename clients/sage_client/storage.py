"""The object store's API (`/api/v1/objects`), in the SAGE storage API's routes and shapes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel

from . import transfer
from .errors import SageError
from .http import Transport, quote_path, quote_segment
from .retry import RetryPolicy

BUCKET_TYPES = ("training-data", "model", "profile", "none")
GranteeType = Literal["USER", "GROUP"]
Permission = Literal["READ", "WRITE", "READ_ACP", "WRITE_ACP", "FULL_CONTROL"]
GRANTEE_TYPES: tuple[GranteeType, ...] = get_args(GranteeType)
PERMISSIONS: tuple[Permission, ...] = get_args(Permission)
OBJECTS = "/api/v1/objects"


class Grant(BaseModel):
    """One permission grant, exactly the three members SAGE clients send and read."""

    granteeType: GranteeType  # noqa: N815 - the wire name
    grantee: str
    permission: Permission


PUBLIC_GRANT = Grant(granteeType="GROUP", grantee="AllUsers", permission="READ")


def object_key(key: str) -> str:
    """A key as the URL carries it: no leading `/` (the answers show one; the path must not)."""
    return key.lstrip("/")


def listing_prefix(prefix: str | None) -> str:
    """A listing path: relative, ending in `/` (the SAGE API lists only paths that do)."""
    p = (prefix or "").strip("/")
    return f"{p}/" if p else ""


class StorageAPI:
    """Buckets, their permissions, and the objects in them."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def _bucket(self, bucket_id: str) -> str:
        return f"{OBJECTS}/{quote_segment(bucket_id)}"

    # -- buckets --------------------------------------------------------------------------------

    async def create_bucket(
        self, datatype: str, name: str | None = None, *, public: bool = False
    ) -> dict[str, Any]:
        """`POST /api/v1/objects?type=&name=[&public=true]`; answers the new bucket."""
        params: dict[str, str] = {"type": datatype}
        if name:
            params["name"] = name
        if public:
            params["public"] = "true"
        result: dict[str, Any] = await self._t.request("POST", OBJECTS, params=params)
        return result

    async def show_bucket(self, bucket_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._t.request("GET", self._bucket(bucket_id))
        return result

    async def list_buckets(
        self, *, owner: str | None = None, name: str | None = None
    ) -> list[dict[str, Any]]:
        """Every bucket the caller may read (its own, shared with it, public)."""
        params = {k: v for k, v in (("owner", owner), ("name", name)) if v}
        answer = await self._t.request("GET", OBJECTS, params=params)
        if isinstance(answer, dict):  # tolerate a wrapped page beside the SAGE array
            answer = answer.get("data") or answer.get("buckets") or []
        return list(answer or [])

    async def update_bucket(self, bucket_id: str, **fields: Any) -> dict[str, Any]:
        """`PATCH` the bucket's `name`, `type` or `metadata` (FULL_CONTROL needed)."""
        body = {k: v for k, v in fields.items() if v is not None}
        result: dict[str, Any] = await self._t.request("PATCH", self._bucket(bucket_id), json=body)
        return result

    async def rename_bucket(self, bucket_id: str, new_name: str) -> dict[str, Any]:
        return await self.update_bucket(bucket_id, name=new_name)

    async def delete_bucket(self, bucket_id: str) -> Any:
        """Delete the bucket with every object and grant in it."""
        return await self._t.request("DELETE", self._bucket(bucket_id))

    # -- permissions ----------------------------------------------------------------------------

    async def permissions(self, bucket_id: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] | None = await self._t.request(
            "GET", self._bucket(bucket_id), params={"permissions": "True"}
        )
        return result or []

    async def add_permission(self, bucket_id: str, grant: Grant) -> dict[str, Any]:
        result: dict[str, Any] = await self._t.request(
            "PUT",
            self._bucket(bucket_id),
            params={"permissions": "True"},
            json=grant.model_dump(),
        )
        return result

    async def delete_permission(
        self, bucket_id: str, grantee_type: str, grantee: str, permission: str | None = None
    ) -> Any:
        """Remove one grant, or every grant of the grantee when `permission` is None."""
        target = f"{grantee_type}:{grantee}" + (f":{permission}" if permission else "")
        return await self._t.request(
            "DELETE", self._bucket(bucket_id), params={"permissions": "True", "grantee": target}
        )

    async def make_public(self, bucket_id: str) -> dict[str, Any]:
        return await self.add_permission(bucket_id, PUBLIC_GRANT)

    async def make_private(self, bucket_id: str) -> Any:
        return await self.delete_permission(bucket_id, "GROUP", "AllUsers")

    # -- objects --------------------------------------------------------------------------------

    async def list_objects(
        self,
        bucket_id: str,
        prefix: str | None = None,
        *,
        recursive: bool = False,
        limit: int | None = None,
        continuation_token: str | None = None,
    ) -> dict[str, Any]:
        """One page of the listing under `prefix`, as the server answers it."""
        params: dict[str, str | int] = {}
        if recursive:
            params["recursive"] = "true"
        if limit:
            params["limit"] = limit
        if continuation_token:
            params["ContinuationToken"] = continuation_token
        path = f"{self._bucket(bucket_id)}/{quote_path(listing_prefix(prefix))}"
        result: dict[str, Any] = await self._t.request("GET", path, params=params)
        return result

    async def iter_object_pages(
        self,
        bucket_id: str,
        prefix: str | None = None,
        *,
        recursive: bool = False,
        limit: int | None = None,
        continuation_token: str | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every page of the listing, following `NextContinuationToken` until it ends."""
        token = continuation_token
        while True:
            page = await self.list_objects(
                bucket_id, prefix, recursive=recursive, limit=limit, continuation_token=token
            )
            yield page
            if not page.get("IsTruncated"):
                return
            next_token = page.get("NextContinuationToken")
            if not next_token or next_token == token:
                raise SageError(
                    0, "the listing is truncated but its continuation token does not advance"
                )
            token = next_token

    async def list_all_objects(
        self,
        bucket_id: str,
        prefix: str | None = None,
        *,
        recursive: bool = False,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """The whole listing merged into one answer of the same shape, not truncated."""
        merged: dict[str, Any] = {}
        contents: list[Any] = []
        prefixes: list[Any] = []
        async for page in self.iter_object_pages(
            bucket_id, prefix, recursive=recursive, limit=limit
        ):
            merged = merged or dict(page)
            contents.extend(page.get("Contents") or [])
            prefixes.extend(page.get("CommonPrefixes") or [])
        merged.update(Contents=contents, CommonPrefixes=prefixes, IsTruncated=False)
        merged.pop("NextContinuationToken", None)
        return merged

    async def delete_object(self, bucket_id: str, key: str) -> Any:
        """Delete one object; an empty key is refused here (in SAGE it deletes the bucket)."""
        k = object_key(key)
        if not k:
            raise SageError(0, "an empty key names no file; to delete a bucket use delete_bucket")
        return await self._t.request("DELETE", f"{self._bucket(bucket_id)}/{quote_path(k)}")

    # -- transfers ------------------------------------------------------------------------------

    async def upload_file(
        self,
        bucket_id: str,
        path: str | Path,
        key: str,
        *,
        progress: Callable[[int, int], None] | None = None,
        retry: RetryPolicy = transfer.DEFAULT_RETRY,
    ) -> dict[str, Any]:
        """Stream one file as the raw body of `PUT .../{key}` with its SHA-256; retried."""
        return await transfer.upload_file(
            self._t, self._bucket(bucket_id), Path(path), key, progress=progress, retry=retry
        )

    async def upload_form(self, bucket_id: str, path: str | Path, key: str = "") -> dict[str, Any]:
        """Upload one file as the multipart `file` part, as older SAGE clients do."""
        return await transfer.upload_form(self._t, self._bucket(bucket_id), Path(path), key)

    async def upload(
        self,
        bucket_id: str,
        sources: Sequence[str | Path],
        key: str = "",
        *,
        concurrency: int = 4,
        observer: transfer.TransferObserver | None = None,
        retry: RetryPolicy = transfer.DEFAULT_RETRY,
    ) -> transfer.UploadReport:
        """Upload files and directories (recursively), several at once; see `plan_upload`."""
        plan = transfer.plan_upload([Path(s) for s in sources], key)
        return await self.upload_plan(
            bucket_id, plan, concurrency=concurrency, observer=observer, retry=retry
        )

    async def upload_plan(
        self,
        bucket_id: str,
        plan: list[transfer.PlannedUpload],
        *,
        concurrency: int = 4,
        observer: transfer.TransferObserver | None = None,
        retry: RetryPolicy = transfer.DEFAULT_RETRY,
    ) -> transfer.UploadReport:
        """Upload what `transfer.plan_upload` mapped; failures are in the report, not raised."""
        return await transfer.upload_many(
            self._t,
            self._bucket(bucket_id),
            plan,
            concurrency=concurrency,
            observer=observer,
            retry=retry,
        )

    async def download(
        self,
        bucket_id: str,
        key: str,
        target: str | Path | None = None,
        *,
        force: bool = False,
        progress: Callable[[int, int], None] | None = None,
        retry: RetryPolicy = transfer.DEFAULT_RETRY,
    ) -> Path:
        """Stream an object to `<target>.part`, then rename it; returns the final path."""
        k = object_key(key)
        if not k or k.endswith("/"):
            raise SageError(0, f"not a file key: {key!r}")
        destination = transfer.download_target(k, target)
        return await transfer.download(
            self._t,
            f"{self._bucket(bucket_id)}/{quote_path(k)}",
            destination,
            force=force,
            progress=progress,
            retry=retry,
        )
