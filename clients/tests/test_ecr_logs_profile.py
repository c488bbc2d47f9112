"""`sage ecr app logs` (the text log, followed by offset) and `sage ecr app profile` (summary and
chart), against the stand-in ECR."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree

import pytest

from clients.tests.standin import Failure, StandIn

APP = "team/detector:1.0.0"
LOGS = "/api/apps/team/detector/1.0.0/logs"
SPEC = "name: detector\nversion: 1.0.0\nnamespace: team\nsource: {url: https://x.org/d.git}\n"


@pytest.fixture
def submitted(sage, server: StandIn, tmp_path: Path) -> StandIn:
    spec = tmp_path / "sage.yaml"
    spec.write_text(SPEC)
    sage.json("ecr", "app", "submit", str(spec))
    server.state.requests.clear()
    return server


def steps(*logs: str, complete_at: int | None = None, build_id: str = "b1") -> list[dict]:
    """One step per answer: the log as it stands; complete from `complete_at` (default: last)."""
    last = len(logs) - 1 if complete_at is None else complete_at
    return [{"log": log, "complete": i >= last, "build_id": build_id} for i, log in enumerate(logs)]


def test_logs_print_the_whole_text_log(sage, submitted: StandIn) -> None:
    result = sage("ecr", "app", "logs", APP)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == submitted.state.log
    assert result.stderr == ""
    sent = submitted.state.requests[-1]
    assert sent["query"] == {"format": "text", "offset": "0"}
    assert sent["headers"]["Accept"] == "text/plain"


def test_logs_of_a_running_build_say_so_on_stderr(sage, submitted: StandIn) -> None:
    submitted.state.log_steps = steps("cloning\n", complete_at=5)
    result = sage("ecr", "app", "logs", APP)
    assert (result.exit_code, result.stdout) == (0, "cloning\n")
    assert "has not finished yet" in result.stderr
    assert submitted.state.text_log_calls == [0]


def test_follow_prints_each_byte_once_asking_only_for_what_is_new(sage, submitted: StandIn) -> None:
    growth = ["", "step 1\n", "step 1\nstep 2 half", "step 1\nstep 2 half done\n"]
    growth.append(growth[-1] + "pushed\n")
    submitted.state.log_steps = steps(*growth)
    result = sage("ecr", "app", "logs", APP, "--follow", "--interval", "0.05")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "step 1\nstep 2 half done\npushed\n"
    assert submitted.state.text_log_calls == [0, 0, 7, 18, 24]
    assert result.stderr == ""


def test_follow_reads_a_big_log_in_chunks_without_waiting_between_them(
    sage, submitted: StandIn
) -> None:
    text = "".join(f"line {i} ✓ héllo\n" for i in range(50))  # multi-byte characters cut by chunks
    submitted.state.log_steps = steps(text)
    submitted.state.log_chunk_bytes = 7
    result = sage("ecr", "app", "logs", APP, "--follow", "--interval", "30")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == text  # no 30 s wait between chunks, no character mangled
    size = len(text.encode())
    assert submitted.state.text_log_calls == list(range(0, size, 7))


def test_follow_starts_over_when_a_rebuild_replaces_the_build(sage, submitted: StandIn) -> None:
    first = steps("old 1\n", "old 1\nold 2\n", complete_at=9, build_id="b1")
    second = [{"log": "new 1\n", "complete": True, "build_id": "b2", "build_number": 2}]
    submitted.state.log_steps = first + second
    result = sage("ecr", "app", "logs", APP, "--follow", "--interval", "0.05")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "old 1\nold 2\nnew 1\n"
    assert "build 2 replaced the one followed; its log from the top" in result.stderr


def test_follow_starts_over_when_the_builder_started_the_build_again(
    sage, submitted: StandIn
) -> None:
    submitted.state.log_steps = steps("try 1 a\ntry 1 b\n", "try 2\n", complete_at=1)
    result = sage("ecr", "app", "logs", APP, "--follow", "--interval", "0.05")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "try 1 a\ntry 1 b\ntry 2\n"
    assert "the build started over" in result.stderr


def test_follow_waits_out_a_503_and_prints_nothing_twice(sage, submitted: StandIn) -> None:
    submitted.state.log_steps = steps("a\n", "a\nb\n")
    busy = Failure(503, '{"error": "log store down"}', headers={"Retry-After": "0"})
    submitted.state.fail("GET", LOGS, busy, times=2)
    result = sage("ecr", "app", "logs", APP, "--follow", "--interval", "0.05")
    assert (result.exit_code, result.stdout) == (0, "a\nb\n")


def test_json_keeps_the_json_answer(sage, submitted: StandIn) -> None:
    answer = sage.json("ecr", "app", "logs", APP)
    assert answer["finished"] is True and answer["log_tail"][-1] == "done"
    assert submitted.state.text_log_calls == []


def test_an_ecr_without_text_logs_gets_the_tail_instead(sage, submitted: StandIn) -> None:
    submitted.state.text_logs = False
    plain = sage("ecr", "app", "logs", APP)
    assert (plain.exit_code, plain.stdout) == (0, submitted.state.log)
    assert "full log: s3://logs/1.txt" in plain.stderr
    submitted.state.log_calls_to_finish = 3  # the tail grows by a line per call
    followed = sage("ecr", "app", "logs", APP, "--follow", "--interval", "0.05")
    assert (followed.exit_code, followed.stdout) == (0, submitted.state.log)


# ---- profile

MiB = 1 << 20


def a_profile(*, series: bool = True) -> dict:
    run = {
        "architecture": "linux/amd64",
        "repetition": 1,
        "exit_code": 0,
        "oom_killed": False,
        "timed_out": False,
        "wall_seconds": 2.5,
        "peak_memory_bytes": 48 * MiB,
        "cpu_seconds": 1.25,
        "cpu_cores": 0.5,
        "passed": True,
    }
    arm = {**run, "architecture": "linux/arm64", "emulated": True, "wall_seconds": 9.0}
    columns = {"t": [0.0, 0.1, 0.2], "memory_bytes": [0, 40 * MiB, 48 * MiB]}
    return {
        "id": APP,
        "build_number": 1,
        "status": "passed",
        "reason": None,
        "runs": [run, {**run, "repetition": 2, "wall_seconds": 2.7}, arm],
        "recommended": {
            "memory_limit_bytes": 60 * MiB,
            "memory_request_bytes": 48 * MiB,
            "cpu_limit": 1.2,
            "cpu_request": 0.5,
            "basis": "2 native runs",
        },
        "concurrency": {"tested": True, "copies": 2, "passed": 2, "slowdown": 1.3},
        "period": {
            "shortest_seconds": 3.6,
            "shortest_minutes": 1,
            "declared_seconds": 300,
            "met": True,
        },
        "node_fit": {
            "rpi": {"architecture": "linux/arm64", "copies": 4, "limited_by": "cpu"},
            "jetson": {"architecture": "linux/arm64", "copies": 12, "limited_by": "cpu"},
        },
        "series": [
            {"architecture": "linux/amd64", "repetition": 1, "cpu_cores": [0, 1, 0.5], **columns},
            {"architecture": "linux/arm64", "repetition": 1, "cpu_cores": [0, 0.2, 0.2], **columns},
        ]
        if series
        else [],
    }


def test_profile_prints_the_summary_and_saves_the_chart_here(
    sage, submitted: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    submitted.state.profile = a_profile()
    result = sage("ecr", "app", "profile", APP)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert out.startswith(f"{APP}: profile passed (build 1)\n")
    assert "48.0 MiB" in out and "(emulated)" in out
    assert "recommended limits: memory 60.0 MiB (request 48.0 MiB); CPU 1.2 cores" in out
    assert "concurrency: 2 copies side by side, 2 passed, 1.3x the time alone" in out
    assert "period: every 1 min at the shortest (3.6 s); declared every 300 s: met" in out
    assert "jetson" in out and "rpi" in out
    chart = tmp_path / "detector-1.0.0-profile.svg"
    assert f"chart: {chart.name}" in out
    root = ElementTree.fromstring(chart.read_text())
    assert len(root.findall("{http://www.w3.org/2000/svg}polyline")) == 4
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "linux/arm64, run 1 (emulated)" in texts


def test_profile_says_which_memory_ceiling_the_runs_had(sage, submitted: StandIn) -> None:
    ceilings = {"memory_bytes": 600 * MiB, "cpus": 2.0, "memory_from": "hardware.min_memory"}
    submitted.state.profile = {**a_profile(series=False), "ceilings": ceilings}
    out = sage("ecr", "app", "profile", APP, "--no-chart").stdout
    assert (
        "ceilings: memory 600.0 MiB, CPU 2 cores (memory raised to the app's hardware.min_memory)"
        in out
    )
    held = {**ceilings, "memory_bytes": 8192 * MiB, "memory_from": "maximum"}
    submitted.state.profile = {
        **a_profile(series=False),
        "ceilings": {**held, "min_memory_bytes": 16384 * MiB},
    }
    out = sage("ecr", "app", "profile", APP, "--no-chart").stdout
    assert "ceilings: memory 8.0 GiB, CPU 2 cores (hardware.min_memory asks for 16.0 GiB;" in out
    submitted.state.profile = a_profile(series=False)  # an older profiler's: no line
    assert "ceilings" not in sage("ecr", "app", "profile", APP, "--no-chart").stdout


def test_profile_will_not_overwrite_a_chart_without_force(
    sage, submitted: StandIn, tmp_path: Path
) -> None:
    submitted.state.profile = a_profile()
    chart = tmp_path / "mine.svg"
    chart.write_text("keep me")
    refused = sage("ecr", "app", "profile", APP, "--chart", str(chart))
    assert refused.exit_code == 1
    assert refused.stderr.strip() == f"sage: error: {chart} exists: pass --force to replace it"
    assert chart.read_text() == "keep me" and submitted.state.requests == []
    forced = sage("ecr", "app", "profile", APP, "--chart", str(chart), "--force")
    assert forced.exit_code == 0, forced.stderr
    assert chart.read_text().startswith("<svg")


def test_profile_json_prints_the_answer_and_saves_a_chart_only_when_asked(
    sage, submitted: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    submitted.state.profile = a_profile()
    assert sage.json("ecr", "app", "profile", APP) == a_profile()
    assert list(tmp_path.glob("*.svg")) == []
    result = sage("ecr", "app", "profile", APP, "--json", "--chart", "c.svg")
    assert json.loads(result.stdout)["status"] == "passed"
    assert "chart: c.svg" in result.stderr and (tmp_path / "c.svg").exists()


def test_profile_chart_must_be_svg_and_needs_series(
    sage, submitted: StandIn, tmp_path: Path
) -> None:
    png = sage("ecr", "app", "profile", APP, "--chart", str(tmp_path / "c.png"))
    assert png.exit_code == 1 and "name the file .svg" in png.stderr
    submitted.state.profile = {**a_profile(series=False), "status": "failed", "reason": "OOM"}
    result = sage("ecr", "app", "profile", APP, "--chart", str(tmp_path / "c.svg"))
    assert result.exit_code == 0, result.stderr
    assert "profile failed" in result.stdout and "reason: OOM" in result.stdout
    assert "no chart written" in result.stderr and not (tmp_path / "c.svg").exists()


def test_profile_before_there_is_one_is_an_error(sage, submitted: StandIn) -> None:
    result = sage("ecr", "app", "profile", APP, "--no-chart")
    assert result.exit_code == 1
    assert "has no profile yet" in result.stderr
