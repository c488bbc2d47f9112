"""Platforms as apps name them, and the build an app.submitted event asks for."""

from __future__ import annotations

import pytest

from sage_builder.models import Platform
from sage_builder.service import request_from_event
from sage_common.schemas import AppSource, AppSubmitted


@pytest.mark.parametrize(
    "text, expected",
    [
        ("linux/amd64", "linux/amd64"),
        ("amd64", "linux/amd64"),
        ("x86_64", "linux/amd64"),
        ("linux/arm64", "linux/arm64"),
        ("aarch64", "linux/arm64"),
        ("linux/arm64/v8", "linux/arm64"),
        ("linux/arm/v7", "linux/arm/v7"),
        (" Linux/ARM64 ", "linux/arm64"),
    ],
)
def test_platform_names_are_normalised(text, expected):
    assert str(Platform.parse(text)) == expected


@pytest.mark.parametrize("text", ["", "linux/", "linux/arm/v7/x", "linux/amd64;rm -rf", "../x"])
def test_malformed_platforms_are_refused(text):
    with pytest.raises(ValueError):
        Platform.parse(text)


def test_event_becomes_a_request_with_unique_valid_platforms():
    data = AppSubmitted(
        app_id="ns/app:1.2",
        build_id="b-1",
        submitter="alice",
        source=AppSource(
            url="https://example.org/app.git",
            tag="v1",
            architectures=["linux/amd64", "amd64", "linux/arm64", "bogus/arch/x/y"],
            build_args={"A": "1"},
        ),
        testing={"command": ["/bin/app"], "timeout": 60.0},
        hardware={"gpu": "none"},
    )
    request = request_from_event(data)
    assert [str(p) for p in request.platforms] == ["linux/amd64", "linux/arm64"]
    assert (request.repository, request.version) == ("ns/app", "1.2")
    assert request.build_args == {"A": "1"} and request.tag == "v1"
    assert request.testing == {"command": ["/bin/app"], "timeout": 60.0}
    assert request.hardware == {"gpu": "none"}
