"""Test data from the object store in the pipeline: uploaded with `sage storage`, read by the profiler.

A scientist puts frames in a bucket with the real command line (through the gateway, as with the
ECR), names it in the app's `testing.data`, and the profiler copies it from the storage service and
mounts it at /data. The profiler reads test data as anyone may: from a public bucket. A private
bucket stays private, also from an app that names it (else any submitter could have the profiler
copy someone else's data into their container and read it back in the log).
"""

from __future__ import annotations

import json
import uuid

import pytest

from tests.fixtures.pipeline import Pipeline, app_path, app_yaml

pytestmark = pytest.mark.slow

READS_FRAMES = ["/bin/sh", "-c", "cat /data/frame.txt && ls /data | wc -l"]


@pytest.fixture(scope="module")
async def scientist(make_user) -> str:
    return await make_user(f"scientist-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
async def frames(pipeline: Pipeline, scientist: str, tmp_path_factory) -> str:
    """A private training-data bucket holding day1/frame.txt; its id."""
    created = await pipeline.sage(
        "storage", "bucket", "create", "--datatype", "training-data", "--name", "frames",
        token=scientist,
    )  # fmt: skip
    assert created.code == 0, created.err
    bucket = json.loads(created.out)["id"]
    work = tmp_path_factory.mktemp("frames")
    (work / "frame.txt").write_text("three cars, one bus\n")
    uploaded = await pipeline.sage(
        "storage", "files", "upload", bucket, "frame.txt", "--key", "day1/", "--no-progress",
        token=scientist, cwd=work,
    )  # fmt: skip
    assert uploaded.code == 0, uploaded.err
    return bucket


async def submit_reading(pipeline: Pipeline, token: str, bucket: str) -> tuple[str, int]:
    """Submit an app whose test reads the bucket's day1/ at /data; (app id, exit code of --wait)."""
    s = uuid.uuid4().hex[:8]
    url, _ = pipeline.publish_source(f"reader-{s}")
    testing = {"command": READS_FRAMES, "data": f"sage://{bucket}/day1/", "timeout": "1m"}
    spec = app_yaml(f"data{s}", "reader", url, testing=testing)
    result = await pipeline.submit(spec, "--wait", "--interval", "0.2", token=token)
    return f"data{s}/reader:1.0.0", result.code


async def test_data_the_profiler_may_not_read_fails_the_profile(
    pipeline: Pipeline, scientist: str, frames: str
) -> None:
    app_id, code = await submit_reading(pipeline, scientist, frames)
    assert code == 1
    status, body = await pipeline.api(
        "GET", f"/api/apps/{app_path(app_id)}/status", token=scientist
    )
    assert status == 200 and body["state"] == "profile_failed"
    reason = body["profile"]["reason"]
    assert (
        f"test data: sage://{frames}/day1/ does not exist or the profiler may not read it" in reason
    )


async def test_data_in_a_public_bucket_is_mounted_for_the_test(
    pipeline: Pipeline, scientist: str, frames: str
) -> None:
    shared = await pipeline.sage("storage", "permissions", "public", frames, token=scientist)
    assert shared.code == 0, shared.err
    app_id, code = await submit_reading(pipeline, scientist, frames)
    assert code == 0
    status, profile = await pipeline.api(
        "GET", f"/api/apps/{app_path(app_id)}/profile", token=scientist
    )
    assert status == 200 and profile["status"] == "passed", profile.get("reason")
    [run] = profile["runs"]
    assert run["log_tail"][:2] == ["three cars, one bus", "1"]
