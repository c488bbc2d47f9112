"""When an app does not make it: a build that fails, a test that fails, and the rebuild after a fix.

Each scientist uses the real `sage` command line through the gateway, as in
test_pipeline_publish.py; every app here is amd64 only. The failing build and the failing test are
each made once for the module and looked at by several tests.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import pytest

from sage_ecr.state import ECR
from tests.fixtures.pipeline import Completed, Pipeline, app_path, app_yaml
from tests.support.bus import eventually

pytestmark = pytest.mark.slow

SELFTEST = "/app/selftest.sh"


@dataclass
class Outcome:
    app_id: str
    owner: str
    submit: Completed
    url: str
    name: str  # of the source in the git server


@pytest.fixture(scope="module")
async def scientist(make_user) -> str:
    return await make_user(f"scientist-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
async def failed_build(pipeline: Pipeline, scientist: str) -> Outcome:
    """An app whose Dockerfile's RUN step fails, submitted with --wait."""
    s = uuid.uuid4().hex[:8]
    name = f"broken-{s}"
    url, _ = pipeline.publish_source(name, "echo compiling-the-model; exit 7")
    spec = app_yaml(f"fail{s}", "broken", url, testing={"command": ["/bin/true"]})
    submit = await pipeline.submit(spec, "--wait", "--interval", "0.2", token=scientist)
    return Outcome(f"fail{s}/broken:1.0.0", scientist, submit, url, name)


@pytest.fixture(scope="module")
async def failed_test(pipeline: Pipeline, scientist: str) -> Outcome:
    """An app that builds, but whose self-test exits 3, submitted with --wait."""
    s = uuid.uuid4().hex[:8]
    name = f"flaky-{s}"
    url, _ = pipeline.publish_source(
        name,
        files={"selftest.sh": "echo checking-the-model\nexit 3\n"},
        steps=(f"COPY selftest.sh {SELFTEST}",),
    )
    spec = app_yaml(
        f"fail{s}", "flaky", url, testing={"command": ["/bin/sh", SELFTEST], "timeout": "1m"}
    )
    submit = await pipeline.submit(spec, "--wait", "--interval", "0.2", token=scientist)
    return Outcome(f"fail{s}/flaky:1.0.0", scientist, submit, url, name)


async def test_a_failing_build_ends_build_failed_and_wait_says_so(failed_build: Outcome) -> None:
    result = failed_build.submit
    assert result.code == 1, result.out
    assert "building" in result.out and "build_failed" in result.out
    assert "profiling" not in result.out
    assert f"{failed_build.app_id} ended build_failed: build_failed: " in result.err
    assert "exit status 7" in result.err


async def test_status_shows_the_build_failure_and_its_class(
    pipeline: Pipeline, failed_build: Outcome
) -> None:
    human = await pipeline.sage(
        "ecr", "app", "status", failed_build.app_id, token=failed_build.owner
    )
    assert human.code == 0, human.err
    assert f"{failed_build.app_id}: build_failed" in human.out
    assert "why: build_failed: " in human.out and "exit status 7" in human.out
    answer = await pipeline.sage(
        "--json", "ecr", "app", "status", failed_build.app_id, token=failed_build.owner
    )
    status = json.loads(answer.out)
    assert status["state"] == "build_failed" and status["frozen"] is False
    assert status["build"]["error_class"] == "build_failed"
    assert "exit status 7" in status["build"]["error"]
    assert status["profile"] is None


async def test_logs_show_the_failing_step_and_the_error(
    pipeline: Pipeline, failed_build: Outcome
) -> None:
    logs = await pipeline.sage("ecr", "app", "logs", failed_build.app_id, token=failed_build.owner)
    assert logs.code == 0, logs.err
    shown = logs.out + logs.err
    assert "compiling-the-model" in shown  # the RUN step's own output
    assert "build failed (build_failed)" in shown  # the builder's last word, with the class


async def test_a_failing_test_ends_profile_failed_with_its_reason(
    pipeline: Pipeline, failed_test: Outcome
) -> None:
    result = failed_test.submit
    assert result.code == 1, result.out
    assert "profiling" in result.out and "profile_failed" in result.out
    assert f"{failed_test.app_id} ended profile_failed: " in result.err
    assert "exited 3, expected 0" in result.err
    answer = await pipeline.sage(
        "--json", "ecr", "app", "profile", failed_test.app_id, token=failed_test.owner
    )
    assert answer.code == 0, answer.err
    profile = json.loads(answer.out)
    assert profile["status"] == "failed"
    assert "exited 3, expected 0" in profile["reason"]
    [run] = profile["runs"]
    assert run["exit_code"] == 3 and "checking-the-model" in "\n".join(run["log_tail"])
    status = json.loads(
        (
            await pipeline.sage(
                "--json", "ecr", "app", "status", failed_test.app_id, token=failed_test.owner
            )
        ).out
    )
    assert status["state"] == "profile_failed"
    assert "exited 3, expected 0" in status["profile"]["reason"]


async def test_a_rebuild_after_a_fix_gets_a_new_build_and_goes_through(
    pipeline: Pipeline, failed_test: Outcome
) -> None:
    path = app_path(failed_test.app_id)
    _, first = await pipeline.api("GET", f"/api/builds/{path}", token=failed_test.owner)
    _, fixed = pipeline.publish_source(
        failed_test.name,
        files={"selftest.sh": "echo checking-the-model\necho all-good\n"},
        steps=(f"COPY selftest.sh {SELFTEST}",),
        message="fix the self-test",
    )
    status, body = await pipeline.api("POST", f"/api/builds/{path}", token=failed_test.owner)
    assert (status, body) == (200, {"build_number": 2})
    await pipeline.reaches(failed_test.app_id, "in_review", token=failed_test.owner)
    _, second = await pipeline.api("GET", f"/api/builds/{path}", token=failed_test.owner)
    assert second["build_number"] == 2 and second["result"] == "SUCCESS"
    assert second["build_id"] != first["build_id"] and second["commit"] == fixed
    submitted = [
        e.data["build_id"]
        for e in pipeline.events.seen
        if e.routing_key == "app.submitted" and e.subject == failed_test.app_id
    ]
    assert submitted == [first["build_id"], second["build_id"]]
    _, history = await pipeline.api("GET", f"/api/apps/{path}/status", token=failed_test.owner)
    moves = [(h["to"], h["build_number"]) for h in history["history"]]
    assert moves[-5:] == [
        ("profile_failed", 1),
        ("submitted", 2),
        ("building", 2),
        ("profiling", 2),
        ("in_review", 2),
    ]


async def test_a_rebuild_during_a_build_cancels_it_and_builds_the_fix(
    pipeline: Pipeline, scientist: str
) -> None:
    s = uuid.uuid4().hex[:8]
    name, app_id = f"slow-{s}", f"fail{s}/slow:1.0.0"
    url, _ = pipeline.publish_source(name, "echo training-forever; sleep 300")
    spec = app_yaml(f"fail{s}", "slow", url, testing={"command": ["/bin/true"]})
    assert (await pipeline.submit(spec, token=scientist)).code == 0
    await pipeline.reaches(app_id, "building", token=scientist)

    async def live_log_shows_the_step() -> bool:  # builder -> S3 -> ECR -> sage, while it runs
        logs = await pipeline.sage("ecr", "app", "logs", app_id, token=scientist)
        return "training-forever" in logs.out

    await eventually(live_log_shows_the_step, within=60, every=0.5)
    _, fixed = pipeline.publish_source(name, "echo trained", message="train before, not here")
    path = app_path(app_id)
    status, body = await pipeline.api("POST", f"/api/builds/{path}", token=scientist)
    assert (status, body) == (200, {"build_number": 2})
    await pipeline.reaches(app_id, "in_review", token=scientist, within=60)

    def of(key: str) -> list[dict]:
        seen = pipeline.events.seen
        return [e.data for e in seen if e.routing_key == key and e.subject == app_id]

    first, second = (e["build_id"] for e in of("app.submitted"))
    assert [c["build_id"] for c in of("build.cancel")] == [first]
    done = await pipeline.events.get(
        lambda e: e.routing_key == "build.done" and e.data["build_id"] == first
    )
    assert done.data["error_class"] == "cancelled"
    [ok] = [d for d in of("build.done") if d["build_id"] == second]
    assert ok["status"] == "success" and ok["commit"] == fixed

    async def recorded() -> bool:  # the ECR has taken the first build's late result in
        async with pipeline.ecr.app[ECR].store.read() as tx:
            build = await tx.get_build(uuid.UUID(first))
        return build is not None and build.status == "failure"

    await eventually(recorded)
    _, answer = await pipeline.api("GET", f"/api/apps/{path}/status", token=scientist)
    assert answer["state"] == "in_review"
    assert [(h["to"], h["build_number"]) for h in answer["history"]] == [
        ("submitted", 1),
        ("building", 1),
        ("submitted", 2),
        ("building", 2),
        ("profiling", 2),
        ("in_review", 2),
    ]  # the first build's late failure changed nothing


async def test_only_a_reviewer_decides_and_a_rejection_says_why(
    pipeline: Pipeline, scientist: str, make_user
) -> None:
    s = uuid.uuid4().hex[:8]
    reviewer = await make_user(f"reviewer-{s}", groups=["reviewers"])
    app_id = f"fail{s}/unclear:1.0.0"
    url, _ = pipeline.publish_source(f"unclear-{s}")
    spec = app_yaml(f"fail{s}", "unclear", url, testing={"command": ["/bin/true"]})
    submitted = await pipeline.submit(spec, "--wait", "--interval", "0.2", token=scientist)
    assert submitted.code == 0, submitted.err
    own = await pipeline.sage("ecr", "review", "approve", app_id, token=scientist)
    assert own.code == 1 and "reviewers" in own.err
    reject = await pipeline.sage(
        "ecr", "review", "reject", app_id, "--comment", "say what it counts", token=reviewer
    )
    assert reject.code == 0 and f"rejected {app_id}" in reject.out, reject.err
    event = await pipeline.events.get(
        lambda e: e.routing_key == "app.rejected" and e.subject == app_id
    )
    assert event.data["reviewer"] == f"reviewer-{s}"
    assert event.data["comment"] == "say what it counts"
    answer = await pipeline.sage("--json", "ecr", "app", "show", app_id, token=scientist)
    shown = json.loads(answer.out)
    assert shown["state"] == "rejected" and shown["frozen"] is False
    assert shown["review"]["comment"] == "say what it counts"
    published = [e for e in pipeline.events.seen if e.routing_key == "app.published"]
    assert all(e.subject != app_id for e in published)
