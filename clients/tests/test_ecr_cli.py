"""`sage ecr ...` against the stand-in ECR: submit, follow the pipeline, review, permissions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clients.tests.standin import StandIn

SPEC = """\
name: detector
version: 1.0.0
namespace: team
description: finds birds
source:
  url: https://example.org/detector.git
  architectures: [linux/amd64, linux/arm64]
"""


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "sage.yaml"
    path.write_text(SPEC)
    return path


def test_submit_posts_the_yaml_and_prints_the_app(sage, server: StandIn, spec: Path) -> None:
    app = sage.json("ecr", "app", "submit", str(spec))
    assert app["id"] == "team/detector:1.0.0"
    sent = server.state.requests[-1]
    assert (sent["method"], sent["path"]) == ("POST", "/api/submit")
    assert sent["headers"]["Content-Type"] == "application/yaml"


def test_submit_wait_prints_each_state_until_published(sage, server: StandIn, spec: Path) -> None:
    server.state.pipeline = [("building", "build 7"), ("profiling", ""), ("in_review", "")]
    result = sage("ecr", "app", "submit", str(spec), "--wait", "--interval", "0.05")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "submitted team/detector:1.0.0; following its pipeline"
    assert [line.split()[1] for line in lines[1:-1]] == [
        "submitted",
        "building",
        "profiling",
        "in_review",
    ]
    assert lines[2].endswith("building  (build 7)")
    assert lines[-1] == "team/detector:1.0.0: in_review (waiting for a reviewer)"


def test_submit_wait_fails_when_the_build_fails(sage, server: StandIn, spec: Path) -> None:
    server.state.pipeline = [("building", ""), ("build_failed", "exit code 2 in step 3")]
    result = sage("ecr", "app", "submit", str(spec), "--wait", "--interval", "0.05", "--json")
    assert result.exit_code == 1
    assert (
        result.stderr.strip().splitlines()[-1]
        == "sage: error: team/detector:1.0.0 ended build_failed"
    )
    out = json.loads(result.stdout)
    assert out["status"]["state"] == "build_failed"
    assert out["status"]["history"][-1]["cause"] == "exit code 2 in step 3"


def failed_first_build(sage, server: StandIn, spec: Path) -> None:
    """A submitted version whose first build failed (what a rebuild is for)."""
    server.state.pipeline = [("building", ""), ("build_failed", "exit code 2 in step 3")]
    assert sage("ecr", "app", "submit", str(spec), "--wait", "--interval", "0.05").exit_code == 1


def test_rebuild_posts_to_the_builds_route_and_prints_the_build_number(
    sage, server: StandIn, spec: Path
) -> None:
    failed_first_build(sage, server, spec)
    result = sage("ecr", "app", "rebuild", "team/detector:1.0.0")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "rebuilding team/detector:1.0.0 (build 2)\n"
    sent = server.state.requests[-1]
    assert (sent["method"], sent["path"]) == ("POST", "/api/builds/team/detector/1.0.0")
    assert sage.json("ecr", "app", "rebuild", "team/detector:1.0.0") == {"build_number": 3}


def test_rebuild_wait_follows_only_the_new_build_until_its_outcome(
    sage, server: StandIn, spec: Path
) -> None:
    failed_first_build(sage, server, spec)
    server.state.stale_statuses = 2  # the status still shows the failed build at first
    server.state.pipeline = [("building", "build 2"), ("profiling", ""), ("in_review", "")]
    result = sage("ecr", "app", "rebuild", "team/detector:1.0.0", "--wait", "--interval", "0.05")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "rebuilding team/detector:1.0.0 (build 2); following its pipeline"
    # The first build's states (and its build_failed) are neither printed nor the outcome.
    assert [line.split()[1] for line in lines[1:-1]] == [
        "submitted",
        "building",
        "profiling",
        "in_review",
    ]
    assert lines[1].endswith("submitted  (rebuild)")
    assert lines[-1] == "team/detector:1.0.0: in_review (waiting for a reviewer)"
    assert server.state.stale_statuses == 0


def test_rebuild_wait_fails_with_the_reason_when_the_new_build_fails(
    sage, server: StandIn, spec: Path
) -> None:
    sage.json("ecr", "app", "submit", str(spec))
    server.state.pipeline = [("building", ""), ("profiling", ""), ("profile_failed", "")]
    args = ("ecr", "app", "rebuild", "team/detector:1.0.0", "--wait", "--interval", "0.05")
    result = sage(*args, "--json")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "sage: error: team/detector:1.0.0 ended profile_failed"
    )
    out = json.loads(result.stdout)
    assert out["build"] == {"build_number": 2}
    assert out["status"]["state"] == "profile_failed" and out["status"]["build_number"] == 2
    assert {e["build_number"] for e in out["status"]["history"]} == {1, 2}


def test_rebuilding_a_published_version_is_refused(sage, server: StandIn, spec: Path) -> None:
    sage.json("ecr", "app", "submit", str(spec))
    sage.json("ecr", "review", "approve", "team/detector:1.0.0", "--comment", "ok")
    result = sage("ecr", "app", "rebuild", "team/detector:1.0.0", "--wait")
    assert result.exit_code == 1
    assert "published and frozen" in result.stderr and "(409)" in result.stderr
    assert server.state.apps["team/detector:1.0.0"]["_build_number"] == 1


def test_invalid_yaml_is_caught_before_sending(sage, server: StandIn, tmp_path: Path) -> None:
    bad = tmp_path / "sage.yaml"
    bad.write_text("name: [unclosed\n")
    result = sage("ecr", "app", "submit", str(bad))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"sage: error: {bad} is not valid YAML at line 2")
    assert server.state.requests == []


@pytest.mark.parametrize(
    "args",
    [
        ("https://ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/team/detector@main",),
        ("https://oauth2:hunter22@127.0.0.1:1/team/detector.git",),
        ("SPEC", "--url", "https://me:hunter22@example.org/detector.git"),
    ],
)
def test_a_url_with_credentials_is_refused_before_cloning_or_sending(
    sage, server: StandIn, spec: Path, args: tuple[str, ...]
) -> None:
    result = sage("ecr", "app", "submit", *(str(spec) if a == "SPEC" else a for a in args))
    assert result.exit_code == 1
    assert "has credentials in it" in result.stderr
    assert "hunter22" not in result.stderr and "ghp_" not in result.stderr
    assert server.state.requests == []


def test_a_plain_ssh_url_is_sent_as_given(sage, server: StandIn, spec: Path) -> None:
    sage.json("ecr", "app", "submit", str(spec), "--url", "ssh://git@github.com/team/detector")
    assert server.state.requests[-1]["query"]["url"] == "ssh://git@github.com/team/detector"


def test_list_all_follows_continuation_tokens(sage, server: StandIn, tmp_path: Path) -> None:
    for i in range(5):
        path = tmp_path / f"s{i}.yaml"
        path.write_text(SPEC.replace("1.0.0", f"1.0.{i}"))
        sage.json("ecr", "app", "submit", str(path))
    apps = sage.json("ecr", "app", "list", "team", "--limit", "2", "--all")
    assert [a["version"] for a in apps] == [f"1.0.{i}" for i in range(5)]
    lists = [r for r in server.state.requests if r["path"] == "/api/apps/team"]
    assert [r["query"].get("continue") for r in lists] == [None, "2", "4"]
    page = sage.json("ecr", "app", "list", "--limit", "2")
    assert page["pagination"]["continuationToken"] == "2" and len(page["data"]) == 2


def test_show_status_profile_delete(sage, server: StandIn, spec: Path) -> None:
    sage.json("ecr", "app", "submit", str(spec))
    server.state.profile = {"status": "passed"}
    assert sage.json("ecr", "app", "show", "team/detector:1.0.0")["description"] == "finds birds"
    assert sage.json("ecr", "app", "status", "team/detector:1.0.0")["state"] == "submitted"
    assert sage.json("ecr", "app", "profile", "team/detector:1.0.0")["status"] == "passed"
    assert sage.json("ecr", "app", "delete", "team/detector:1.0.0") == {
        "deleted": ["team/detector:1.0.0"]
    }
    gone = sage("ecr", "app", "show", "team/detector:1.0.0")
    assert (gone.exit_code, gone.stderr.strip()) == (1, "sage: error: app not found (404)")


def test_a_malformed_app_id_is_a_usage_error(sage) -> None:
    result = sage("ecr", "app", "show", "detector-1.0")
    assert result.exit_code == 2
    assert "namespace/name:version" in result.stderr


def test_review_sends_the_decision_and_comment(sage, server: StandIn, spec: Path) -> None:
    sage.json("ecr", "app", "submit", str(spec))
    out = sage.json("ecr", "review", "reject", "team/detector:1.0.0", "--comment", "no tests")
    assert out["state"] == "rejected"
    assert server.state.apps["team/detector:1.0.0"]["_review"] == {
        "decision": "reject",
        "comment": "no tests",
    }
    missing = sage("ecr", "review", "reject", "team/detector:1.0.0")
    assert missing.exit_code == 2


def test_namespaces_and_permissions(sage, server: StandIn) -> None:
    sage.json("ecr", "namespace", "create", "team")
    assert [n["id"] for n in sage.json("ecr", "namespace", "list")] == ["team"]
    sage.json("ecr", "permissions", "add", "team/detector", "group", "AllUsers", "read")
    assert server.state.ecr_grants["team/detector"] == [
        {
            "operation": "add",
            "granteeType": "GROUP",
            "grantee": "AllUsers",
            "permission": "READ",
        }
    ]
    assert server.state.requests[-1]["path"] == "/api/permissions/team/detector"
    assert len(sage.json("ecr", "permissions", "show", "team/detector")) == 1
