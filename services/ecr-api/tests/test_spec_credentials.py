"""Credentials in an app description's links are refused; stored ones are never shown."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from sage_ecr.records import App
from sage_ecr.spec import AppSpec
from sage_ecr.views import app_doc


def make(url: str, **overrides: object) -> dict:
    data = {
        "namespace": "lab",
        "name": "car-counter",
        "version": "1.0.0",
        "description": "counts cars",
        "source": {"url": url},
    }
    data.update(overrides)
    return data


def problems(data: dict) -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        AppSpec.model_validate(data)
    return {".".join(str(p) for p in e["loc"]): e["msg"] for e in info.value.errors()}


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/waggle-sensor/plugin-iio.git",
        "git@github.com:org/repo.git",
        "ssh://git@host/x",
    ],
)
def test_source_urls_without_credentials_are_accepted(url):
    assert AppSpec.model_validate(make(url)).source.url == url


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("https://user:hunter22@git.example.org/lab/app.git", "hunter22"),
        ("https://ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/org/repo", "ghp_"),
        ("https://oauth2:glpat-abcdefghij0123456789@gitlab.com/org/repo.git", "glpat-"),
        ("ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com:org/repo.git", "ghp_"),
    ],
)
def test_source_urls_with_credentials_are_refused_saying_how_to_give_access(url, secret):
    found = problems(make(url))
    assert list(found) == ["source.url"]
    message = found["source.url"]
    assert "public repository" in message and "without user name or password" in message
    assert secret not in message


def test_other_links_with_credentials_are_refused_too():
    found = problems(
        make(
            "https://github.com/org/repo",
            homepage="https://me:hunter22@example.org/",
            provenance={
                "training_code": "https://tok3n@github.com/org/train",
                "training_data": ["https://me:hunter22@data.example.org/set"],
            },
        )
    )
    # training_code is an http or a git link: pydantic names each arm of the union
    assert {key.split(".function-after")[0] for key in found} == {
        "homepage",
        "provenance.training_code",
        "provenance.training_data.0",
    }
    assert not any("hunter22" in m or "tok3n" in m for m in found.values())


def test_a_stored_url_with_credentials_is_shown_redacted():
    """An app stored before the rule keeps its description, but its document hides the secret."""
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    spec = {
        "description": "older than the rule",
        "source": {"url": "https://oauth2:glpat-s3cret0123@gitlab.com/lab/old.git"},
    }
    app = App(
        1, "lab", "old", "1.0", "1.0", "someone", spec, "published", moment, moment, build_number=1
    )
    doc = app_doc(app, None)
    assert doc["source"]["url"] == "https://***@gitlab.com/lab/old.git"
    assert "s3cret" not in repr(doc)
