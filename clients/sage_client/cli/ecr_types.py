"""Click parameter types of the ECR commands."""

from __future__ import annotations

from typing import Any

import click

from ..ecr import AppId
from ..errors import SageError


class AppIdType(click.ParamType):
    name = "NS/NAME:VERSION"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> AppId:
        if isinstance(value, AppId):
            return value
        try:
            return AppId.parse(str(value))
        except SageError as exc:
            self.fail(exc.message, param, ctx)


APP_ID = AppIdType()
