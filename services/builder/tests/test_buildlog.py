"""Build logs: secrets scrubbed, written while the build runs, tail kept, size capped."""

from __future__ import annotations

import asyncio
import base64

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


@pytest.mark.parametrize("secret", ["", "abc"])
def test_trivially_short_secrets_are_not_scrubbed_everywhere(secret):
    assert Scrubber([secret])("abc def") == "abc def"
