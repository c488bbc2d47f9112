"""docs/events.md is generated from the event models and must match them."""

from __future__ import annotations

from pathlib import Path

from sage_common.eventdoc import render

PAGE = Path(__file__).resolve().parents[3] / "docs" / "events.md"


def test_events_page_matches_the_models() -> None:
    assert PAGE.read_text() == render(), (
        "docs/events.md is out of date: run `.venv/bin/python -m sage_common.eventdoc "
        "docs/events.md` and commit it"
    )


def test_every_event_has_a_schema_section() -> None:
    text = render()
    for name in ("ProfileDone", "BuildDone", "Recommended", "NodeFit", "Concurrency", "Period"):
        assert f"### {name}\n" in text
