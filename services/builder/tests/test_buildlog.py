"""Build logs: secrets scrubbed, written while the build runs, tail kept, size capped."""

from __future__ import annotations

import asyncio
import base64
import threading

import pytest

from sage_builder.buildlog import BuildLog, MemoryLogSink, Scrubber


def test_known_secrets_and_credential_shapes_are_scrubbed():
    secret = "s3cr3t-client-secret"
    basic = base64.b64encode(f"builder:{secret}".encode()).decode()
    scrub = Scrubber([secret, basic])
    lines = [
        f"using {secret} now",
        f"Authorization: Basic {basic}",
        "fetching https://alice:hunter22@example.org/app.git",
        "remote: https://ghp_abcdefghij0123456789@github.com/org/app.git not found",
        "fatal: clone of 'http://deploy:s3cret-pw@127.0.0.1:1/sub.git' into submodule failed",
        "token: eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJidWlsZGVyIn0.c2lnbmF0dXJl",
        "Bearer abcdefghijklmnop1234",
        "https://example.org/?access_token=abcdef123456&x=1",
        "password=letmein",
    ]
    scrubbed = [scrub(line) for line in lines]
    for clean in scrubbed:
        assert "***" in clean, clean
    text = "\n".join(scrubbed)
    for leaked in (
        secret,
        basic,
        "hunter22",
        "ghp_abcdefghij",
        "s3cret-pw",
        "eyJzdWIi",
        "abcdefghijklmnop1234",
        "abcdef123456",
        "letmein",
    ):
        assert leaked not in text
    assert scrub("STEP 1/3: FROM scratch") == "STEP 1/3: FROM scratch"


class FailingSink(MemoryLogSink):
    async def put(self, key: str, data: bytes, *, complete: bool) -> None:
        raise ConnectionError("S3 is down")


async def test_log_is_uploaded_while_open_and_marked_complete_at_the_end():
    sink = MemoryLogSink()
    log = BuildLog(sink, "k", Scrubber(["topsecret"]), flush_seconds=0.01, tail_lines=2)
    async with log:
        log("line one with topsecret")
        for _ in range(100):
            if sink.objects.get("k"):
                break
            await asyncio.sleep(0.01)
        assert sink.objects["k"] == b"line one with ***\n"
        assert sink.complete["k"] is False
        log("line two")
        log("line three")
    assert sink.objects["k"].decode().splitlines() == [
        "line one with ***",
        "line two",
        "line three",
    ]
    assert sink.complete["k"] is True
    assert log.tail() == ["line two", "line three"]
    assert log.uploaded and log.location == "memory://k"


async def test_log_past_its_cap_is_truncated_but_the_tail_stays_current():
    sink = MemoryLogSink()
    async with BuildLog(sink, "k", Scrubber(), max_bytes=100, tail_lines=1) as log:
        for i in range(50):
            log(f"line {i:04d}")
    text = sink.objects["k"].decode()
    assert len(text) < 200 and text.endswith("[log truncated: larger than the builder keeps]\n")
    assert log.tail() == ["line 0049"]


async def test_a_log_store_outage_does_not_fail_the_build():
    log = BuildLog(FailingSink(), "k", Scrubber(), flush_seconds=0.01)
    async with log:
        log("hello")
        await asyncio.sleep(0.05)
    assert not log.uploaded and log.tail() == ["hello"]
    assert log.finishing is not None and not log.finishing.done()  # still trying
    log.finishing.cancel()


class OutageSink(MemoryLogSink):
    """Up, then down for `failures` uploads (as an S3 restart), then up again."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.down = asyncio.Event()

    async def put(self, key: str, data: bytes, *, complete: bool) -> None:
        if self.down.is_set() and self.failures > 0:
            self.failures -= 1
            raise ConnectionError("S3 is down")
        await super().put(key, data, complete=complete)


async def test_a_log_store_outage_as_the_build_ends_leaves_the_log_whole_once_it_is_back():
    """Regression (fault suite, S3 restart under builds): the last lines of a build that ended
    while S3 was down never reached S3, and the log stayed cut short for good."""
    sink = OutageSink(failures=3)
    log = BuildLog(sink, "k", Scrubber(), flush_seconds=0.01, retry_seconds=0.01)
    async with log:
        log("step one")
        for _ in range(100):
            if sink.objects.get("k"):
                break
            await asyncio.sleep(0.01)
        sink.down.set()
        log("build succeeded: the image")
    assert sink.objects["k"] == b"step one\n" and log.finishing is not None  # not waited for
    await asyncio.wait_for(log.finishing, 5)
    assert sink.objects["k"] == b"step one\nbuild succeeded: the image\n"
    assert sink.complete["k"] is True and sink.failures == 0


@pytest.mark.parametrize("secret", ["", "abc"])
def test_trivially_short_secrets_are_not_scrubbed_everywhere(secret):
    assert Scrubber([secret])("abc def") == "abc def"


class ThreadSink(MemoryLogSink):
    """Uploads run in a thread, as the minio client's do; the first waits for `release` (a put
    that S3 is slow to take, retried inside the client)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.calls = 0

    async def put(self, key: str, data: bytes, *, complete: bool) -> None:
        self.calls += 1
        first = self.calls == 1

        def write() -> None:
            if first:
                self.release.wait(5)
            self.objects[key], self.complete[key] = data, complete

        await asyncio.to_thread(write)


async def test_a_flush_still_under_way_at_the_end_never_overwrites_the_whole_log():
    """Regression (fault suite, S3 restart under builds): the flusher was cancelled while its
    upload went on in a thread; that upload landed after the last one, cutting the log short."""
    sink = ThreadSink()
    log = BuildLog(sink, "k", Scrubber(), flush_seconds=0.01)
    await log.__aenter__()
    log("step one")
    for _ in range(100):
        if sink.calls:
            break
        await asyncio.sleep(0.01)
    log("build succeeded: the image")
    ending = asyncio.create_task(log.__aexit__(None, None, None))
    await asyncio.sleep(0.05)
    sink.release.set()
    await asyncio.wait_for(ending, 5)
    await asyncio.sleep(0.05)
    assert sink.objects["k"] == b"step one\nbuild succeeded: the image\n"
    assert sink.complete["k"] is True
