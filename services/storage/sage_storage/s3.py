"""The object store on a real S3 server (MinIO, or `rclone serve s3`) through the `minio` client.

The client is synchronous: every call runs on a bounded thread pool whose size is also the size of
the HTTP connection pool. The one exception is a small body's single PUT, the most frequent call,
which is signed with the client's signer and sent from the event loop on kept-alive connections
of its own (`_PutConnections`): one write of head and body, one short answer to read. Network
failures and S3 server errors become `Unavailable` here, so the rest of the service never sees a
urllib3 or minio exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import logging
import re
import ssl
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import quote

import urllib3
from minio import Minio
from minio.credentials.credentials import Credentials
from minio.datatypes import Part
from minio.deleteobjects import DeleteObject
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError

from sage_common.errors import Unavailable

from .config import Config
from .objectstore import BlobMissing, BlobReader, Buffer, UploadMissing

log = logging.getLogger(__name__)

T = TypeVar("T")
READ_CHUNK = 1024 * 1024
_CODE_RE = re.compile(r"<Code>([A-Za-z]+)</Code>")
_SPACES = re.compile(r"( +)")
_MISSING_BLOB = {"NoSuchKey", "NoSuchObject"}
_MISSING_UPLOAD = {"NoSuchUpload"}
# A PUT's head and body go in one write (one segment on loopback) up to this size, else in two
# (no copy of a large body).
_JOINED = 256 * 1024


def _s3_code(exc: BaseException) -> str | None:
    """The S3 error code, also where a server sends its XML error as text/xml (rclone does)."""
    if isinstance(exc, S3Error):
        return exc.code
    if isinstance(exc, InvalidResponseError):
        match = _CODE_RE.search(str(exc))
        return match.group(1) if match else None
    return None


def translate(exc: BaseException, what: str) -> BaseException:
    """The domain error for a failed S3 call."""
    code = _s3_code(exc)
    if code in _MISSING_BLOB:
        return BlobMissing(what)
    if code in _MISSING_UPLOAD:
        return UploadMissing(what)
    if isinstance(exc, (urllib3.exceptions.HTTPError, OSError, ServerError)):
        log.warning("object store unreachable during %s: %s", what, type(exc).__name__)
        return Unavailable("the object store is unreachable, try again", retry_after=5)
    log.error("object store refused %s: %s", what, code or type(exc).__name__)
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
        self._put_url = self.client._base_url.build(
            method="PUT", region=self._region, bucket_name=self._bucket, object_name="k"
        )
        self._put_path = self._put_url.path[:-1]
        self._signer = _Signer(self._region)
        # Small bodies go in one PUT on these connections (opened on first use, in the loop).
        self._puts = _PutConnections(
            self._put_url.hostname or "127.0.0.1",
            self._put_url.port or (443 if config.s3_secure else 80),
            ssl.create_default_context() if config.s3_secure else None,
            config.s3_connections,
            config.s3_connect_timeout,
            config.s3_read_timeout,
        )

    async def close(self) -> None:
        self._puts.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _call(self, what: str, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kw))
        except (MinioException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise translate(exc, what) from None

    async def ensure_bucket(self) -> None:
        if not await self._call("bucket check", self.client.bucket_exists, self._bucket):
            try:
                await self._call("bucket creation", self.client.make_bucket, self._bucket)
            except Unavailable:
                # A replica starting beside this one may have made it first.
                if not await self._call("bucket check", self.client.bucket_exists, self._bucket):
                    raise

    async def ping(self) -> None:
        await self._call("ping", self.client.bucket_exists, self._bucket)

    async def put(
        self,
        key: str,
        data: Buffer,
        *,
        content_type: str,
        metadata: dict[str, str],
        sha256: str | None = None,
    ) -> None:
        """One signed PUT sent from the event loop itself, not through the minio client's threads:
        most uploads are small, and a thread per request costs more (GIL hand-overs, a second
        SHA-256 of the body) than the request. `sha256`, the body's digest in hex, is the payload
        hash the signature covers (computed here when not given)."""
        payload = sha256 or hashlib.sha256(data).hexdigest()
        headers = {
            "Host": self._put_url.netloc,
            "Content-Type": content_type,
            "Content-Length": str(len(data)),
            "x-amz-content-sha256": payload,
            **_meta_headers(metadata),
        }
        path = self._put_path + quote(key)
        creds = self.client._provider.retrieve() if self.client._provider else None
        signed = self._signer.sign("PUT", path, headers, payload, creds)
        try:
            status, answer = await self._puts.put(path, signed, data)
        except (OSError, TimeoutError, EOFError, ValueError) as exc:
            log.warning("object store unreachable during put: %s", type(exc).__name__)
            raise Unavailable("the object store is unreachable, try again", retry_after=5) from None
        if status != 200:
            match = _CODE_RE.search(answer.decode(errors="replace"))
            log.error("object store refused put: %s", match.group(1) if match else status)
            raise Unavailable("the object store failed, try again", retry_after=5)

    async def create_multipart(
        self, key: str, *, content_type: str, metadata: dict[str, str]
    ) -> str:
        headers = {"Content-Type": content_type, **_meta_headers(metadata)}
        return await self._call(
            "multipart start", self.client._create_multipart_upload, self._bucket, key, headers
        )

    async def upload_part(self, key: str, upload_id: str, number: int, data: Buffer) -> str:
        return await self._call(
            "part upload",
            self.client._upload_part,
            self._bucket,
            key,
            data,
            None,
            upload_id,
            number,
        )

    async def complete_multipart(
        self, key: str, upload_id: str, parts: list[tuple[int, str]]
    ) -> None:
        await self._call(
            "multipart completion",
            self.client._complete_multipart_upload,
            self._bucket,
            key,
            upload_id,
            [Part(n, etag) for n, etag in parts],
        )

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        try:
            await self._call(
                "multipart abort",
                self.client._abort_multipart_upload,
                self._bucket,
                key,
                upload_id,
            )
        except UploadMissing:
            pass

    async def upload_exists(self, key: str, upload_id: str) -> bool:
        try:
            await self._call("part listing", self.client._list_parts, self._bucket, key, upload_id)
        except UploadMissing:
            return False
        return True

    async def open(self, key: str, offset: int = 0, length: int | None = None) -> BlobReader:
        response = await self._call(
            "download",
            self.client.get_object,
            self._bucket,
            key,
            offset=offset,
            length=length or 0,
        )
        size = int(response.headers.get("Content-Length", "0"))
        return BlobReader(self._chunks(response), size)

    async def _chunks(self, response: Any) -> AsyncIterator[bytes]:
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
                "delete", lambda b=batch: list(self.client.remove_objects(self._bucket, b))
            )
            failed = [e for e in errors if e.code not in _MISSING_BLOB]
            if failed:
                log.error("object store kept %d blobs on delete: %s", len(failed), failed[0].code)
                raise Unavailable("the object store failed to delete, try again")

    async def list_keys(self, prefix: str) -> list[str]:
        return await self._call(
            "listing",
            lambda: [
                o.object_name
                for o in self.client.list_objects(self._bucket, prefix=prefix, recursive=True)
            ],
        )


def _meta_headers(metadata: dict[str, str]) -> dict[str, str]:
    return {f"x-amz-meta-{k}": v for k, v in metadata.items()}


class _PutConnections:
    """Kept-alive HTTP/1.1 connections to the S3 server for single PUTs, at most `limit` open.

    A PUT is written in one go (head and body) and its answer is short (no body, or an XML error
    with a length or in chunks), so this needs none of a general client's machinery, whose cost
    per request was a third of the service's own work for a small upload. A connection that the
    server closed while idle fails on its first use; the PUT (to a new blob key, so idempotent)
    is then sent once more on a new connection.
    """

    def __init__(
        self,
        host: str,
        port: int,
        tls: ssl.SSLContext | None,
        limit: int,
        connect_timeout: float,
        read_timeout: float,
    ) -> None:
        self._host, self._port, self._tls = host, port, tls
        self._slots = asyncio.Semaphore(limit)
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._connect_timeout, self._read_timeout = connect_timeout, read_timeout

    async def put(self, path: str, headers: dict[str, str], data: Buffer) -> tuple[int, bytes]:
        """The status and body of the answer to a PUT of `data` to `path`."""
        head = f"PUT {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        start = head.encode("latin-1") + b"\r\n"
        request: list[Buffer] = [start + data] if len(data) <= _JOINED else [start, data]
        async with self._slots:
            while self._idle:
                reader, writer = self._idle.pop()
                try:
                    return await self._send(reader, writer, request)
                except (OSError, EOFError):  # closed by the server while idle
                    pass
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self._host, self._port, ssl=self._tls),
                self._connect_timeout,
            )
            return await self._send(reader, writer, request)

    async def _send(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: list[Buffer]
    ) -> tuple[int, bytes]:
        try:
            for piece in request:
                writer.write(piece)
            async with asyncio.timeout(self._read_timeout):  # no task per call, as wait_for
                status, body, keep = await _answer(reader)
        except BaseException:
            writer.close()
            raise
        if keep:
            self._idle.append((reader, writer))
        else:
            writer.close()
        return status, body

    def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Status, body and whether the connection stays open, of one HTTP/1.1 answer."""
    line = await reader.readline()
    if not line:
        raise EOFError("the connection closed before an answer")
    version, _, rest = line.decode("latin-1").partition(" ")
    status = int(rest[:3])
    keep = version == "HTTP/1.1"
    length: int | None = None
    chunked = False
    while (line := await reader.readline()) not in (b"\r\n", b"\n"):
        if not line:
            raise EOFError("the connection closed in an answer's head")
        name, _, value = line.decode("latin-1").partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding":
            chunked = value == "chunked"
        elif name == "connection":
            keep = value == "keep-alive" or (keep and value != "close")
    if not chunked and length is None and status not in (204, 304):
        return status, await reader.read(), False  # delimited by the connection's end
    if not chunked:
        return status, await reader.readexactly(length or 0), keep
    body = b""
    while size := int((await reader.readline()).split(b";")[0], 16):
        body += (await reader.readexactly(size + 2))[:-2]
    while (await reader.readline()) not in (b"\r\n", b"\n", b""):  # trailers
        pass
    return status, body, keep


class _Signer:
    """AWS Signature V4 of a single PUT, as minio's signer makes it (`test_s3_signer` compares
    the two), with the day's signing key kept: four HMACs fewer per request, and no datetimes."""

    def __init__(self, region: str) -> None:
        self._region = region
        self._keys: dict[tuple[str, str], bytes] = {}

    def _key(self, secret: str, day: str) -> bytes:
        key = self._keys.get((secret, day))
        if key is None:
            key = ("AWS4" + secret).encode()
            for part in (day, self._region, "s3", "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._keys = {(secret, day): key}  # only today's (and the current secret's)
        return key

    def sign(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        payload: str,
        creds: Credentials | None,
        now: float | None = None,
    ) -> dict[str, str]:
        """`headers` with x-amz-date (and Authorization, with `creds`) added."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        headers = {**headers, "x-amz-date": stamp}
        if creds is None:
            return headers
        if creds.session_token:
            headers["X-Amz-Security-Token"] = creds.session_token
        canonical = sorted(
            (k.lower(), _SPACES.sub(" ", v).strip() if "  " in v else v.strip())
            for k, v in headers.items()
        )
        signed = ";".join(k for k, _ in canonical)
        lines = "\n".join(f"{k}:{v}" for k, v in canonical)
        request = f"{method}\n{path or '/'}\n\n{lines}\n\n{signed}\n{payload}"
        scope = f"{stamp[:8]}/{self._region}/s3/aws4_request"
        to_sign = (
            f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n" + hashlib.sha256(request.encode()).hexdigest()
        )
        signature = hmac.new(
            self._key(creds.secret_key, stamp[:8]), to_sign.encode(), hashlib.sha256
        ).hexdigest()
        headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        )
        return headers
