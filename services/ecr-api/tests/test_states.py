"""The version's state follows the facts about its build, whatever order the events came in."""

from __future__ import annotations

from sage_ecr.states import Facts, State, advance

S = State


def path(state: State, facts: Facts) -> list[str]:
    return [f"{m.source}->{m.target}" for m in advance(state, facts)]


def test_the_happy_path_one_event_at_a_time():
    assert path(S.SUBMITTED, Facts(started=True)) == ["submitted->building"]
    assert path(S.BUILDING, Facts(started=True, build="success")) == ["building->profiling"]
    assert path(S.PROFILING, Facts(True, "success", "passed")) == ["profiling->in_review"]


def test_failures_stop_the_pipeline():
    assert path(S.BUILDING, Facts(True, "failure")) == ["building->build_failed"]
    assert path(S.PROFILING, Facts(True, "success", "failed")) == ["profiling->profile_failed"]
    assert path(S.BUILD_FAILED, Facts(True, "failure", "passed")) == []


def test_build_done_before_build_started_skips_building():
    assert path(S.SUBMITTED, Facts(build="success")) == ["submitted->profiling"]
    # the late build.started then changes nothing
    assert path(S.PROFILING, Facts(started=True, build="success")) == []


def test_a_profile_that_overtook_its_build_is_applied_when_the_build_lands():
    assert path(S.SUBMITTED, Facts(profile="passed")) == []
    assert path(S.SUBMITTED, Facts(build="success", profile="passed")) == [
        "submitted->profiling",
        "profiling->in_review",
    ]


def test_review_outcomes_are_final_for_events():
    for state in (S.IN_REVIEW, S.PUBLISHED, S.REJECTED):
        assert path(state, Facts(True, "success", "passed")) == []
