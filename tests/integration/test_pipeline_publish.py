"""One app's whole life, as a scientist, a reviewer and the edge scheduler see it.

A scientist pushes a `FROM scratch` busybox app to git (in a subdirectory, with its own Dockerfile
name and a build argument) and runs `sage ecr app submit sage.yaml --wait` (the real command line,
through a gateway); the builder builds it for amd64 and arm64 and
pushes it to the token-auth registry, the profiler pulls it with its own credentials and runs its
test, a reviewer approves it with `sage ecr review approve`, and a scheduler bound to the exchange
hears `app.published` and finds the image, its digests and limits in `GET /api/apps`. The app is
built and published once for the module; each test looks at one side of it.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from sage_common.events import CloudEvent
from tests.fixtures.pipeline import Completed, Pipeline, app_path, app_yaml, scheduler_headers

pytestmark = pytest.mark.slow

TEST_COMMAND = [
    "/bin/sh",
    "-c",
    "echo counting-cars; seq 1 5 | wc -l; cat /etc/counter.conf; echo arch=$(uname -m)",
]


@dataclass
class Published:
    app_id: str
    owner: str  # the scientist's token
    reviewer: str  # the reviewer's name
    submit: Completed
    approve: Completed
    event: CloudEvent
    commit: str  # what the source's branch pointed at when it was built


@pytest.fixture(scope="module")
async def published(pipeline: Pipeline, make_user, tmp_path_factory) -> Published:
    """Submit with --wait, approve as a reviewer, and hear the scheduler's `app.published`."""
    s = uuid.uuid4().hex[:8]
    owner = await make_user(f"scientist-{s}")
    reviewer = f"reviewer-{s}"
    reviewer_token = await make_user(reviewer, groups=["reviewers"])
    url, commit = pipeline.publish_source(
        f"counter-{s}",
        "mkdir -p /etc && echo threshold=$THRESHOLD > /etc/counter.conf",
        args=("THRESHOLD",),
        directory="app",
        dockerfile="Containerfile",
    )
    spec = app_yaml(
        f"lab{s}",
        "counter",
        url,
        architectures=("linux/amd64", "linux/arm64"),
        testing={"command": TEST_COMMAND, "timeout": "1m", "repetitions": 1, "period": "5m"},
        directory="app",
        dockerfile="Containerfile",
        build_args={"THRESHOLD": "0.5"},
    )
    work = tmp_path_factory.mktemp("scientist")
    (work / "sage.yaml").write_text(yaml.safe_dump(spec))
    app_id = f"lab{s}/counter:1.0.0"
    submit = await pipeline.sage(
        "ecr", "app", "submit", "sage.yaml", "--wait", "--interval", "0.2", token=owner, cwd=work
    )
    approve = await pipeline.sage(
        "ecr", "review", "approve", app_id, "--comment", "counts well", token=reviewer_token
    )
    event = await pipeline.events.get(
        lambda e: e.routing_key == "app.published" and e.subject == app_id, within=30
    )
    return Published(app_id, owner, reviewer, submit, approve, event, commit)


def states_printed(out: str) -> list[str]:
    """The state words `--wait` printed, one per history line, in order."""
    names = "submitted|building|build_failed|profiling|profile_failed|in_review"
    return [m.group(1) for m in re.finditer(rf"^\d{{4}}-\S+Z\s+({names})\b", out, re.MULTILINE)]


async def test_submit_wait_prints_each_state_until_review(published: Published) -> None:
    result = published.submit
    assert result.code == 0, result.err
    printed = states_printed(result.out + result.err)
    assert printed == ["submitted", "building", "profiling", "in_review"], result.out
    assert f"{published.app_id}: in_review" in result.out


async def test_reviewer_approval_publishes_and_freezes(
    pipeline: Pipeline, published: Published
) -> None:
    assert published.approve.code == 0, published.approve.err
    assert f"approved {published.app_id}" in published.approve.out
    status = await pipeline.sage(
        "--json", "ecr", "app", "status", published.app_id, token=published.owner
    )
    assert status.code == 0, status.err
    body = json.loads(status.out)
    assert body["state"] == "published" and body["frozen"] is True
    assert [h["to"] for h in body["history"]][-2:] == ["in_review", "published"]
    assert body["history"][-1]["actor"] == published.reviewer


async def test_review_is_requested_with_the_build_and_profile_summary(
    pipeline: Pipeline, published: Published
) -> None:
    requested = await pipeline.events.get(
        lambda e: e.routing_key == "review.requested" and e.subject == published.app_id
    )
    build, profile = requested.data["build"], requested.data["profile"]
    assert build["result"] == "SUCCESS" and build["state"] == "in_review"
    assert {i["architecture"] for i in build["images"]} == {"linux/amd64", "linux/arm64"}
    assert profile["status"] == "passed" and profile["recommended"]["memory_limit_bytes"] > 0
    assert profile["period"]["met"] is True  # declared every 5 minutes


async def test_scheduler_hears_app_published_with_a_digest_per_architecture(
    pipeline: Pipeline, published: Published
) -> None:
    data = published.event.data
    assert data["reviewer"] == published.reviewer and data["comment"] == "counts well"
    repository = published.app_id.split(":")[0]
    assert data["image"] == f"{pipeline.registry.address}/{repository}:1.0.0"
    digests = {i["architecture"]: i["digest"] for i in data["images"]}
    assert set(digests) == {"linux/amd64", "linux/arm64"}
    # The digests are what the registry serves: the index and each architecture's manifest.
    reader = await pipeline.registry_reader(repository)
    index, _ = await reader.manifest(repository, "1.0.0")
    served = {
        f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"]
        for m in index["manifests"]
    }
    assert served == digests
    _, index_digest_media = await reader.manifest(repository, data["index_digest"])
    assert "index" in index_digest_media or "list" in index_digest_media


async def test_scheduler_lists_image_hardware_and_limits(
    pipeline: Pipeline, published: Published
) -> None:
    ns = published.app_id.split("/")[0]
    query = {"published": "true", "architecture": "linux/arm64", "namespace": ns}
    status, body = await pipeline.api(
        "GET", "/api/apps", params=query, headers=scheduler_headers(pipeline)
    )
    assert status == 200, body
    [app] = body["data"]
    assert app["id"] == published.app_id and app["frozen"] is True
    assert app["source"]["architectures"] == ["linux/amd64", "linux/arm64"]
    assert app["source"]["git_commit"] == published.commit  # SAGE's field: the commit built
    assert app["hardware"]["gpu"] == "none" and app["hardware"]["min_memory"] == 64 * 1024**2
    image = app["image"]
    assert image["reference"] == published.event.data["image"]
    assert image["digests"] == {
        i["architecture"]: i["digest"] for i in published.event.data["images"]
    }
    assert image["pinned"] == image["reference"].rsplit(":", 1)[0] + "@" + image["index_digest"]
    recommended = app["profile"]["recommended"]
    assert app["profile"]["status"] == "passed"
    assert recommended["memory_limit_bytes"] >= recommended["memory_request_bytes"] > 0
    assert recommended["cpu_limit"] > 0
    # A node of another architecture finds nothing to run.
    query["architecture"] = "linux/arm/v7"
    status, body = await pipeline.api(
        "GET", "/api/apps", params=query, headers=scheduler_headers(pipeline)
    )
    assert (status, body["data"]) == (200, [])


async def test_the_profiler_pulled_the_image_and_ran_its_test_on_each_architecture(
    pipeline: Pipeline, published: Published
) -> None:
    status, profile = await pipeline.api(
        "GET", f"/api/apps/{app_path(published.app_id)}/profile", token=published.owner
    )
    assert status == 200, profile
    runs = {r["architecture"]: r for r in profile["runs"]}
    assert set(runs) == {"linux/amd64", "linux/arm64"}
    assert runs["linux/arm64"]["emulated"] is True
    for arch, machine in (("linux/amd64", "x86_64"), ("linux/arm64", "aarch64")):
        run: dict[str, Any] = runs[arch]
        assert run["exit_code"] == 0 and run["passed"] is True
        tail = "\n".join(run["log_tail"])
        assert "counting-cars" in tail
        assert "threshold=0.5" in tail  # the build argument, written at build time
        assert f"arch={machine}" in tail


async def test_a_frozen_version_refuses_a_rebuild(pipeline: Pipeline, published: Published) -> None:
    status, body = await pipeline.api(
        "POST", f"/api/builds/{app_path(published.app_id)}", token=published.owner
    )
    assert status == 409, body
    assert "frozen" in body["detail"]
