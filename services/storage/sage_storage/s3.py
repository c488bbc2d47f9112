"""The object store on a real S3 server (MinIO, or `rclone serve s3`) through the `minio` client.

The client is synchronous: its calls run on a bounded thread pool, also its connection pool's size;
a small body's single PUT, the most frequent call, is signed with its signer and sent from the
event loop on one aiohttp session instead. Network failures and S3 server errors become
`Unavailable` here, so the rest of the service never sees a urllib3, aiohttp or minio exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import urllib3
from minio import Minio
from minio import time as minio_time
from minio.datatypes import Part
from minio.deleteobjects import DeleteObject
from minio.error import MinioException, ServerError
from minio.helpers import DictType
from minio.signer import sign_v4_s3

from sage_common.errors import Unavailable
from sage_common.s3 import body_code, s3_code

from .config import Config
from .objectstore import BlobMissing, Buffer, UploadMissing

log = logging.getLogger(__name__)

T = TypeVar("T")
READ_CHUNK = 1024 * 1024
_MISSING_BLOB = {"NoSuchKey", "NoSuchObject"}
_MISSING_UPLOAD = {"NoSuchUpload"}
_UNREACHABLE = (urllib3.exceptions.HTTPError, aiohttp.ClientError, OSError, ServerError)


def translate(exc: BaseException, what: str) -> BaseException:
    """The domain error for a failed S3 call."""
    code = s3_code(exc)
    if code in _MISSING_BLOB:
        return BlobMissing(what)
    if code in _MISSING_UPLOAD:
        return UploadMissing(what)
    if isinstance(exc, _UNREACHABLE):
        log.warning("object store unreachable during %s: %s", what, type(exc).__name__)
        return Unavailable("the object store is unreachable, try again", retry_after=5)
    return _refused(what, code or type(exc).__name__)


def _refused(what: str, why: object) -> Unavailable:
    log.error("object store refused %s: %s", what, why)
    return Unavailable("the object store failed, try again", retry_after=5)


class S3ObjectStore:
    """`ObjectStore` on one S3 bucket; blob keys are `<sage-bucket-id>/<blob-id>`."""

    def __init__(self, config: Config) -> None:
        self._bucket = config.s3_bucket
        self._region = config.s3_region
        self._pool = ThreadPoolExecutor(config.s3_workers, thread_name_prefix="s3")
        http = urllib3.PoolManager(
            maxsize=config.s3_workers,
            timeout=urllib3.Timeout(connect=config.s3_connect_timeout, read=config.s3_read_timeout),
            # A store that is down must answer quickly as a 503, not after a long back-off.
            retries=urllib3.Retry(
                total=2,
                connect=1,
                read=0,
                backoff_factor=0.1,
                status_forcelist=[502, 503, 504],
                allowed_methods=["GET", "HEAD", "DELETE"],
            ),
        )
        self.client = Minio(
            config.s3_endpoint,
            access_key=config.s3_access_key,
            secret_key=config.s3_secret_key.get_secret_value(),
            secure=config.s3_secure,
            region=config.s3_region,
            http_client=http,
        )
        # Where a small body's PUT goes: the URL of a key is this one's path plus the quoted key.
        url = self.client._base_url.build(
            method="PUT", region=self._region, bucket_name=self._bucket, object_name="k"
        )
        self._put_url = url._replace(path=url.path[:-1])
        # Small bodies go in one PUT on this aiohttp session (made on first use, in the loop).
        self._http: aiohttp.ClientSession | None = None
        self._connections = config.s3_connections
        # A small PUT's whole exchange in one timer (a read timeout would be re-armed on every
        # packet of the answer).
        self._timeout = aiohttp.ClientTimeout(
            total=config.s3_read_timeout, sock_connect=config.s3_connect_timeout
        )

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _call(self, what: str, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """`fn(bucket, *args, **kw)` on a thread, for this store's S3 bucket."""
        call = functools.partial(fn, self._bucket, *args, **kw)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, call)
        except (MinioException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise translate(exc, what) from None

    async def ensure_bucket(self) -> None:
        if not await self._call("bucket check", self.client.bucket_exists):
            try:
                await self._call("bucket creation", self.client.make_bucket)
            except Unavailable:
                # A replica starting beside this one may have made it first.
                if not await self._call("bucket check", self.client.bucket_exists):
                    raise

    async def put(
        self,
        key: str,
        data: Buffer,
        *,
        content_type: str,
        metadata: dict[str, str],
        sha256: str,
    ) -> None:
        """One signed PUT sent from the event loop itself, not through the minio client's threads:
        most uploads are small, and a thread per request costs more (GIL hand-overs, a second
        SHA-256 of the body) than the request. `sha256`, the body's digest in hex, is the payload
        hash the signature covers."""
        if self._http is None:
            # One session for every PUT: kept-alive connections, the timeouts set once, and no
            # headers that S3 does not need (each is parsed, and signed, on every request).
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections),
                timeout=self._timeout,
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
            )
        url = self._put_url._replace(path=self._put_url.path + quote(key))
        date = minio_time.utcnow()
        headers: DictType = {
            "Host": url.netloc,
            "Content-Type": content_type,
            "Content-Length": str(len(data)),
            "x-amz-content-sha256": sha256,
            "x-amz-date": minio_time.to_amz_date(date),
            **_meta_headers(metadata),
        }
        creds = self.client._provider.retrieve() if self.client._provider else None
        if creds is not None:
            headers = sign_v4_s3(
                method="PUT",
                url=url,
                region=self._region,
                headers=headers,
                credentials=creds,
                content_sha256=sha256,
                date=date,
            )
        try:
            async with self._http.put(
                url.geturl(), data=data, headers={k: str(v) for k, v in headers.items()}
            ) as response:
                status, answer = response.status, await response.read()
        except (aiohttp.ClientError, OSError) as exc:  # TimeoutError is an OSError
            raise translate(exc, "put") from None
        if status != 200:
            raise _refused("put", body_code(answer.decode(errors="replace")) or status)

    async def create_multipart(
        self, key: str, *, content_type: str, metadata: dict[str, str]
    ) -> str:
        headers = {"Content-Type": content_type, **_meta_headers(metadata)}
        return await self._call(
            "multipart start", self.client._create_multipart_upload, key, headers
        )

    async def upload_part(self, key: str, upload_id: str, number: int, data: Buffer) -> str:
        return await self._call(
            "part upload", self.client._upload_part, key, data, None, upload_id, number
        )

    async def complete_multipart(
        self, key: str, upload_id: str, parts: list[tuple[int, str]]
    ) -> None:
        done = [Part(number, etag) for number, etag in parts]
        await self._call(
            "multipart completion", self.client._complete_multipart_upload, key, upload_id, done
        )

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        with contextlib.suppress(UploadMissing):
            await self._call("multipart abort", self.client._abort_multipart_upload, key, upload_id)

    async def open(
        self, key: str, offset: int = 0, length: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        response = await self._call(
            "download", self.client.get_object, key, offset=offset, length=length or 0
        )
        return self._chunks(response)

    async def _chunks(self, response: Any) -> AsyncGenerator[bytes, None]:
        # One read always in flight: S3 delivers the next chunk while the caller sends this one.
        loop = asyncio.get_running_loop()
        pending = loop.run_in_executor(self._pool, response.read, READ_CHUNK)
        try:
            while True:
                try:
                    chunk = await pending
                except (urllib3.exceptions.HTTPError, OSError) as exc:
                    raise translate(exc, "download") from None
                if not chunk:
                    return
                pending = loop.run_in_executor(self._pool, response.read, READ_CHUNK)
                yield chunk
        finally:
            if not pending.done():
                with contextlib.suppress(Exception):
                    await asyncio.shield(pending)
            response.close()
            response.release_conn()

    async def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = [DeleteObject(k) for k in keys[start : start + 1000]]
            errors = await self._call(
                "delete", lambda bucket, b=batch: list(self.client.remove_objects(bucket, b))
            )
            failed = [e for e in errors if e.code not in _MISSING_BLOB]
            if failed:
                log.error("object store kept %d blobs on delete: %s", len(failed), failed[0].code)
                raise Unavailable("the object store failed to delete, try again")


def _meta_headers(metadata: dict[str, str]) -> dict[str, str]:
    return {f"x-amz-meta-{k}": v for k, v in metadata.items()}
