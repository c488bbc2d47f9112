"""Uploads and downloads: raw streamed bodies with checksums, retries, .part files, progress."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import pytest

from clients.tests.standin import GOOD_TOKEN, StandIn
from sage_client import RetryPolicy, SageClient, SageError
from sage_client.transfer import plan_upload

FAST = RetryPolicy(attempts=3, base_delay=0.01)


def _bucket(server: StandIn) -> str:
    bid = "b1"
    server.state.buckets[bid] = {"id": bid, "name": "x", "owner": "alice", "type": "model"}
    server.state.grants[bid] = []
    server.state.objects[bid] = {}
    return bid


def test_upload_streams_a_raw_body_with_its_sha256(sage, server: StandIn, tmp_path: Path) -> None:
    bid = _bucket(server)
    data = b"picture" * 50_000
    (tmp_path / "camera_picture1.jpg").write_bytes(data)
    out = sage.json("storage", "files", "upload", bid, str(tmp_path / "camera_picture1.jpg"))
    assert out["files_uploaded"] == 1 and out["failed"] == []
    assert out["files"][0]["key"] == "/camera_picture1.jpg"
    assert server.state.objects[bid]["camera_picture1.jpg"] == data
    headers = server.state.requests[-1]["headers"]
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["X-Checksum-SHA256"] == hashlib.sha256(data).hexdigest()
    assert headers["Content-Length"] == str(len(data))


def test_upload_retries_after_a_503_then_succeeds(sage, server: StandIn, tmp_path: Path) -> None:
    bid = _bucket(server)
    (tmp_path / "a.bin").write_bytes(b"abc")
    server.state.fail_uploads = 1
    result = sage("storage", "files", "upload", bid, str(tmp_path / "a.bin"), "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["files_uploaded"] == 1
    assert "retrying a.bin after attempt 1: storage is restarting (503)" in result.stderr
    puts = [r for r in server.state.requests if r["method"] == "PUT"]
    assert len(puts) == 2
    assert server.state.objects[bid] == {"a.bin": b"abc"}


def test_upload_gives_up_after_its_retries(sage, server: StandIn, tmp_path: Path) -> None:
    bid = _bucket(server)
    (tmp_path / "a.bin").write_bytes(b"abc")
    server.state.fail_uploads = 5
    result = sage("storage", "files", "upload", bid, str(tmp_path / "a.bin"), "--retries", "1")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == "sage: error: 1 of 1 files failed to upload"
    assert server.state.objects[bid] == {}


def test_upload_of_directories_keeps_their_tree(sage, server: StandIn, tmp_path: Path) -> None:
    bid = _bucket(server)
    pics = tmp_path / "pics"
    (pics / "day1").mkdir(parents=True)
    for name in ("a.jpg", "day1/b.jpg", "day1/c.jpg"):
        (pics / name).write_bytes(name.encode())
    (tmp_path / "model.pt").write_bytes(b"weights")
    out = sage.json(
        "storage",
        "files",
        "upload",
        bid,
        str(pics),
        str(tmp_path / "model.pt"),
        "--key",
        "v2/",
        "--concurrency",
        "2",
    )
    assert out["files_uploaded"] == 4
    assert sorted(server.state.objects[bid]) == [
        "v2/model.pt",
        "v2/pics/a.jpg",
        "v2/pics/day1/b.jpg",
        "v2/pics/day1/c.jpg",
    ]
    assert server.state.objects[bid]["v2/pics/day1/c.jpg"] == b"day1/c.jpg"


def test_several_sources_need_a_folder_key(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(SageError, match="must end in '/'"):
        plan_upload([tmp_path / "a", tmp_path / "b"], "single-name")
    assert [p.key for p in plan_upload([tmp_path / "a"], "/x/y.bin")] == ["x/y.bin"]


def test_progress_bars_leave_json_output_intact(sage, server: StandIn, tmp_path: Path) -> None:
    bid = _bucket(server)
    for i in range(3):
        (tmp_path / f"f{i}.bin").write_bytes(b"z" * 300_000)
    result = sage(
        "storage",
        "files",
        "upload",
        bid,
        *(str(tmp_path / f"f{i}.bin") for i in range(3)),
        "--progress",
        "--json",
    )
    assert result.exit_code == 0
    assert json.loads(result.stdout)["files_uploaded"] == 3
    assert "total (3 files)" in result.stderr


def test_download_goes_through_a_part_file(server: StandIn, tmp_path: Path) -> None:
    bid = _bucket(server)
    data = bytes(range(256)) * 20_000
    server.state.objects[bid]["day1/a.bin"] = data
    target = tmp_path / "a.bin"
    seen: list[tuple[bool, bool]] = []

    async def go() -> Path:
        async with SageClient(server.url, GOOD_TOKEN) as sage:
            return await sage.storage.download(
                bid,
                "/day1/a.bin",
                tmp_path,
                retry=FAST,
                progress=lambda done, total: seen.append(
                    ((tmp_path / "a.bin.part").exists(), target.exists())
                ),
            )

    assert asyncio.run(go()) == target
    assert target.read_bytes() == data
    assert not (tmp_path / "a.bin.part").exists()
    assert seen and all(part and not final for part, final in seen)


def test_download_refuses_to_overwrite_without_force(sage, server: StandIn, tmp_path: Path) -> None:
    bid = _bucket(server)
    server.state.objects[bid]["a.txt"] = b"new"
    target = tmp_path / "a.txt"
    target.write_bytes(b"old")
    result = sage("storage", "files", "download", bid, "a.txt", "--target", str(target))
    assert result.exit_code == 1
    assert (
        result.stderr.strip()
        == f"sage: error: {target} already exists; not overwriting it (use --force)"
    )
    assert target.read_bytes() == b"old"
    forced = sage.json(
        "storage", "files", "download", bid, "a.txt", "--target", str(target), "--force"
    )
    assert forced["size"] == 3 and target.read_bytes() == b"new"


def test_download_resumes_after_a_broken_connection(sage, server: StandIn, tmp_path: Path) -> None:
    bid = _bucket(server)
    data = b"0123456789" * 100_000
    server.state.objects[bid]["big.bin"] = data
    server.state.cut_downloads = 1
    out = sage.json("storage", "files", "download", bid, "big.bin", "--target", str(tmp_path) + "/")
    assert Path(out["path"]).read_bytes() == data
    gets = [r for r in server.state.requests if r["path"].endswith("big.bin")]
    assert "Range" not in gets[0]["headers"]
    assert gets[1]["headers"]["Range"] == f"bytes={len(data) // 2}-"


def test_download_of_a_missing_key_leaves_nothing(sage, server: StandIn, tmp_path: Path) -> None:
    bid = _bucket(server)
    result = sage("storage", "files", "download", bid, "nope.bin", "--target", str(tmp_path / "n"))
    assert result.exit_code == 1
    assert result.stderr.strip() == "sage: error: object not found (404)"
    assert list(tmp_path.iterdir()) == []


async def test_multipart_form_upload_is_kept_for_compatibility(
    server: StandIn, tmp_path: Path
) -> None:
    bid = _bucket(server)
    (tmp_path / "camera_picture1.jpg").write_bytes(b"jpeg")
    async with SageClient(server.url, GOOD_TOKEN) as sage:
        answer = await sage.storage.upload_form(bid, tmp_path / "camera_picture1.jpg", "/")
    assert answer == {"bucket-id": bid, "key": "/camera_picture1.jpg"}
    assert server.state.requests[-1]["headers"]["Content-Type"].startswith("multipart/form-data")
