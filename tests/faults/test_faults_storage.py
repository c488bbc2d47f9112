"""The storage service heals without a human: 20 uploads in flight through a real
`python -m sage_storage` process while its S3 server restarts, or while the process itself is
killed (-9) and started again.

Each upload's client retries what did not succeed (as the SAGE client's user would), so all 20
end stored, byte for byte. While the fault lasts every answer is 200 or 503 with Retry-After,
never a 500; no object is visible before its upload committed; readiness is out the whole time
(503 for S3, nothing answering for a killed process) and 200 after; and once the sweeper has run
no blob is left in S3 that no object row points at, with the sweep counted in the metrics.

The S3 server is a private `rclone serve s3` on a free port (tests/fixtures/s3.py), never the
shared one; the killed storage process keeps its blobs in a bucket of its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from pydantic import SecretStr

from sage_storage.config import Config
from tests.fixtures.auth import MakeUser
from tests.fixtures.s3 import S3Server
from tests.support.bus import eventually
from tests.support.faults import DOWN, Readiness, ServiceProcess
from tests.support.ports import free_port

MiB = 1 << 20
UPLOADS = 20


def chunk(n: int, i: int) -> bytes:
    """MiB `i` of upload `n`: known bytes, so the stored object can be checked."""
    return hashlib.sha256(f"{n}:{i}".encode()).digest() * (MiB // 32)


@dataclass
class Upload:
    """One file, uploaded until it is stored; every answer kept."""

    n: int
    size_mib: int
    hold_at: int = 1  # the first try stops after this many MiB until the fault has struck
    answers: list[int] = field(default_factory=list)  # HTTP status, or DOWN (connection lost)
    retry_after: list[str | None] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"f{self.n}.bin"

    @property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        for i in range(self.size_mib):
            digest.update(chunk(self.n, i))
        return digest.hexdigest()


@dataclass
class Uploader:
    http: aiohttp.ClientSession
    url: str
    token: str
    bucket: str
    hold: asyncio.Event = field(default_factory=asyncio.Event)  # set: bodies flow on
    started: int = 0  # bodies under way and held

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"sage {self.token}"}

    async def body(self, up: Upload, held: bool) -> AsyncIterator[bytes]:
        for i in range(up.size_mib):
            if i == up.hold_at and held:
                self.started += 1
                await self.hold.wait()  # under way when the fault strikes, going on after
            yield chunk(up.n, i)

    async def once(self, up: Upload, *, held: bool) -> int:
        url = f"{self.url}/api/v1/objects/{self.bucket}/{up.key}"
        try:
            async with self.http.put(url, data=self.body(up, held), headers=self.headers) as r:
                await r.read()
                up.answers.append(r.status)
                up.retry_after.append(r.headers.get("Retry-After"))
                return r.status
        except aiohttp.ClientError:
            up.answers.append(DOWN)
            up.retry_after.append(None)
            return DOWN

    async def until_stored(self, up: Upload, *, first: bool = True) -> None:
        """Upload (the first try held mid-body) and try again until it is stored."""
        held = first
        deadline = time.monotonic() + 90
        while await self.once(up, held=held) != 200:
            held = False
            assert time.monotonic() < deadline, up
            await asyncio.sleep(0.3)

    async def head(self, up: Upload) -> tuple[int, int, str]:
        url = f"{self.url}/api/v1/objects/{self.bucket}/{up.key}"
        async with self.http.head(url, headers=self.headers) as r:
            length = int(r.headers.get("Content-Length", "0"))
            return r.status, length, r.headers.get("X-Checksum-SHA256", "")


@dataclass
class Rig:
    process: ServiceProcess
    s3: S3Server
    http: aiohttp.ClientSession
    uploader: Uploader

    @property
    def config(self) -> Config:
        return self.process.config  # type: ignore[no-any-return]

    async def swept_uploads(self) -> float:
        async with self.http.get(f"{self.process.url}/metrics") as r:
            text = await r.text()
        total = 0.0
        for line in text.splitlines():
            if line.startswith("sage_storage_swept_total{") and 'kind="upload"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return total

    async def bookkeeping(self) -> tuple[set[str], set[str], int]:
        """(blobs object rows point at, blobs in S3, uploads not committed) of the bucket."""
        conn = await asyncpg.connect(self.config.database_url.get_secret_value())
        try:
            schema = self.config.db_schema
            bucket = uuid.UUID(self.uploader.bucket)
            rows = await conn.fetch(
                f"SELECT blob FROM {schema}.objects WHERE bucket_id = $1", bucket
            )
            open_uploads = await conn.fetchval(f"SELECT count(*) FROM {schema}.uploads")
        finally:
            await conn.close()
        client = self.s3.client()
        stored = await asyncio.to_thread(
            lambda: {
                o.object_name
                for o in client.list_objects(
                    self.config.s3_bucket, prefix=f"{bucket}/", recursive=True
                )
            }
        )
        return {r["blob"] for r in rows}, stored, int(open_uploads)

    async def no_orphan(self) -> bool:
        try:
            referenced, stored, open_uploads = await self.bookkeeping()
        except Exception:  # noqa: BLE001 - S3 not answering yet
            return False
        return referenced == stored and open_uploads == 0


@pytest.fixture
async def rig(
    database_url: str,
    make_s3_server: Callable[[], S3Server],
    auth_settings: Callable[[str], dict[str, str]],
    make_user: MakeUser,
    tmp_path: Path,
) -> AsyncIterator[Rig]:
    """`python -m sage_storage` (one worker) on a private S3 server, started and ready, with a
    bucket of a new user's."""
    s3 = make_s3_server()
    s = uuid.uuid4().hex[:8]
    config = Config(
        port=free_port(),
        workers=1,
        database_url=SecretStr(database_url),
        db_schema=f"storage_faults_{s}",
        s3_endpoint=s3.endpoint,
        s3_access_key=s3.access_key,
        s3_secret_key=SecretStr(s3.secret_key),
        s3_region=s3.region,
        s3_bucket=f"faults-{s}",
        s3_connect_timeout=1.0,
        part_size=5 * MiB,  # a 7 MiB upload is a multipart one, its first part sent early
        max_upload_bytes=1 << 30,
        garbage_grace_seconds=0,
        sweep_interval_seconds=0.5,
        stale_upload_seconds=5,  # a killed process's uploads count as abandoned this soon
        stall_seconds=3.0,
        **auth_settings("storage"),
    )
    process = ServiceProcess("sage_storage", "SAGE_STORAGE_", config, tmp_path / "storage.log")
    process.start()
    try:
        async with aiohttp.ClientSession() as http:
            await process.ready(http)
            token = await make_user(f"sf{s}")
            async with http.post(
                f"{process.url}/api/v1/objects",
                params={"type": "model"},
                headers={"Authorization": f"sage {token}"},
            ) as r:
                assert r.status == 200, await r.text()
                bucket = str((await r.json())["id"])
            yield Rig(process, s3, http, Uploader(http, process.url, token, bucket))
    finally:
        process.kill()


def uploads() -> list[Upload]:
    return [Upload(n, 2 + n % 3) for n in range(UPLOADS)]  # 2-4 MiB, 60 MiB in all


def multipart_uploads() -> list[Upload]:
    """Half of them multipart ones with a part in S3 when held (so a kill leaves something
    for the sweeper); the others held before their one PUT (nothing in S3 yet)."""
    return [Upload(n, 7, hold_at=6) if n % 2 else Upload(n, 2) for n in range(UPLOADS)]


async def all_stored(rig: Rig, ups: list[Upload], tasks: list[asyncio.Task[None]]) -> float:
    await asyncio.gather(*tasks)
    done = time.monotonic()
    for up in ups:
        assert set(up.answers) <= {200, 503, DOWN}, (up.n, up.answers)  # never a 500
        assert all(
            int(r or 0) > 0 for s, r in zip(up.answers, up.retry_after, strict=True) if s == 503
        ), up
        assert await rig.uploader.head(up) == (200, up.size_mib * MiB, up.sha256), up.n
    return done


async def test_with_no_fault_every_upload_is_stored_once(rig: Rig) -> None:
    """The control, and the baseline of the recovery times: the same 20 uploads, held and
    released with nothing failing, each stored on its first try, no blob left over."""
    ups = uploads()
    uploader = rig.uploader
    async with Readiness(rig.http, rig.process.url).watching() as watch:
        tasks = [asyncio.create_task(uploader.until_stored(up)) for up in ups]
        await eventually(lambda: uploader.started == UPLOADS, within=30)
        released = time.monotonic()
        uploader.hold.set()
        done = await all_stored(rig, ups, tasks)
        assert set(watch.between(0, time.monotonic())) == {200}
    assert all(up.answers == [200] for up in ups), [up.answers for up in ups]
    assert await rig.no_orphan()
    print(f"\nno fault [storage]: {UPLOADS} uploads stored after {done - released:.1f} s")


async def test_s3_restart_with_uploads_in_flight_heals_without_a_human(rig: Rig) -> None:
    ups = uploads()
    uploader = rig.uploader
    async with Readiness(rig.http, rig.process.url).watching() as watch:
        tasks = [asyncio.create_task(uploader.until_stored(up)) for up in ups]
        await eventually(lambda: uploader.started == UPLOADS, within=30)
        began = time.monotonic()
        await asyncio.to_thread(rig.s3.stop)
        uploader.hold.set()  # the bodies flow on into a storage service without its S3
        await eventually(lambda: all(up.answers for up in ups), within=60)
        first = [up.answers[0] for up in ups]
        assert 503 in first and set(first) <= {200, 503}, first
        for up in ups:  # not stored: nothing of it visible
            if 200 not in up.answers:
                assert (await uploader.head(up))[0] == 404, up.n
        await asyncio.sleep(1.5)  # readiness polled through the outage
        restarting = time.monotonic()  # ready may answer 200 before start() returns
        await asyncio.to_thread(rig.s3.start)
        over = time.monotonic()
        watch.assert_out_during(began, restarting, expect=503)
        done = await all_stored(rig, ups, tasks)
        to_ready = watch.assert_ready_after(over)
    await eventually(rig.no_orphan, within=30, every=0.2)
    swept = time.monotonic()
    assert await rig.swept_uploads() >= first.count(503)
    print(
        f"\nS3 restart [storage]: ready after {to_ready:.1f} s, {UPLOADS} uploads stored after "
        f"{done - over:.1f} s (no orphan after {swept - over:.1f} s)"
    )


async def test_storage_killed_with_uploads_in_flight_heals_once_restarted(rig: Rig) -> None:
    ups = multipart_uploads()
    uploader = rig.uploader
    async with Readiness(rig.http, rig.process.url).watching() as watch:
        tasks = [asyncio.create_task(uploader.until_stored(up)) for up in ups]
        await eventually(lambda: uploader.started == UPLOADS, within=30)
        began = time.monotonic()
        rig.process.kill()
        uploader.hold.set()
        await eventually(lambda: all(up.answers for up in ups), within=30)
        assert {up.answers[0] for up in ups} == {DOWN}
        await asyncio.sleep(1)
        over = time.monotonic()
        rig.process.start()
        watch.assert_out_during(began, over, expect=DOWN, grace=0.2)
        done = await all_stored(rig, ups, tasks)
        to_ready = watch.assert_ready_after(over)
    await eventually(rig.no_orphan, within=30, every=0.2)
    swept = time.monotonic()
    # the killed process's multipart uploads, aborted by the sweeper and counted
    assert await rig.swept_uploads() >= UPLOADS // 2
    print(
        f"\nstorage kill -9 [storage]: ready after {to_ready:.1f} s, {UPLOADS} uploads stored after "
        f"{done - over:.1f} s (no orphan after {swept - over:.1f} s)"
    )
