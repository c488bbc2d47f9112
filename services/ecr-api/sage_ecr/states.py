"""The pipeline state of one app version, derived from the facts recorded on its current build.

The state only moves forward from the facts, so a duplicate or a late `build.started` changes
nothing, and a `profile.done` that overtakes its `build.done` waits as a fact until it arrives.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


class State(StrEnum):
    REGISTERED = "registered"  # stored, not built: submitted by a user not yet approved
    SUBMITTED = "submitted"
    BUILDING = "building"
    BUILD_FAILED = "build_failed"
    PROFILING = "profiling"
    PROFILE_FAILED = "profile_failed"
    IN_REVIEW = "in_review"
    PUBLISHED = "published"
    REJECTED = "rejected"


# States in which a build is under way (a rebuild then cancels it).
IN_FLIGHT = frozenset({State.SUBMITTED, State.BUILDING, State.PROFILING})

Fact = Literal["build.started", "build.done", "profile.done"]


@dataclass(frozen=True)
class Facts:
    """What the events so far say about one build."""

    started: bool = False
    build: Literal["success", "failure"] | None = None
    profile: Literal["passed", "failed"] | None = None


@dataclass(frozen=True)
class Transition:
    source: State
    target: State
    cause: Fact


def _step(state: State, facts: Facts) -> Transition | None:
    if state in (State.SUBMITTED, State.BUILDING):
        if facts.build == "success":
            return Transition(state, State.PROFILING, "build.done")
        if facts.build == "failure":
            return Transition(state, State.BUILD_FAILED, "build.done")
        if state == State.SUBMITTED and facts.started:
            return Transition(state, State.BUILDING, "build.started")
    if state == State.PROFILING:
        if facts.profile == "passed":
            return Transition(state, State.IN_REVIEW, "profile.done")
        if facts.profile == "failed":
            return Transition(state, State.PROFILE_FAILED, "profile.done")
    return None


def advance(state: State, facts: Facts) -> list[Transition]:
    """Every transition the facts allow from `state`, in order (empty when nothing changes)."""
    moves: list[Transition] = []
    while (move := _step(state, facts)) is not None:
        moves.append(move)
        state = move.target
    return moves
