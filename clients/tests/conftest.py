"""Fixtures of the client's unit tests: the stand-in server and a way to run `sage` against it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result

from clients.tests.standin import GOOD_TOKEN, StandIn
from sage_client.cli import cli


@pytest.fixture
def server() -> Iterator[StandIn]:
    with StandIn() as standin:
        yield standin


class Sage:
    """Runs the `sage` command line in-process with SAGE_HOST pointed at the stand-in."""

    def __init__(self, url: str) -> None:
        self.env: dict[str, str | None] = {
            "SAGE_HOST": url,
            "SAGE_USER_TOKEN": GOOD_TOKEN,
            "SAGE_STORE_URL": None,
            "SAGE_TIMEOUT": None,
        }

    def __call__(self, *args: str, env: dict[str, str | None] | None = None) -> Result:
        runner = CliRunner()
        return runner.invoke(
            cli, list(args), env={**self.env, **(env or {})}, catch_exceptions=False
        )

    def json(self, *args: str, **kw: Any) -> Any:
        result = self(*args, "--json", **kw)
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)


@pytest.fixture
def sage(server: StandIn) -> Sage:
    return Sage(server.url)
