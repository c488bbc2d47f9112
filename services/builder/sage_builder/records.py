"""What the builder's store hands its use cases: typed records, no database rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sage_common.schemas import BuildDone

# A build claimed for the first time, again after a lost attempt (a redelivery), or finished.
Claim = Literal["new", "resumed", "finished"]


@dataclass(frozen=True)
class Build:
    """One build's row: running (the `attempts` it took so far) until its one result is kept."""

    build_id: str
    app_id: str
    status: str = "running"
    attempts: int = 1
    result: BuildDone | None = None


@dataclass(frozen=True)
class Pushed:
    """What a version's successful builds reported pushing, oldest build first."""

    indexes: tuple[str, ...]
    manifests: tuple[str, ...]
