"""The app description (`sage.yaml`): SAGE's app spec plus `hardware`, `provenance`, `testing`.

The models forbid unknown fields, so the schema served to editors is strict; the server reads
SAGE's looser forms first (`spec_sage`). `docs/app-spec.md` describes each field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from sage_common.appspec import Architecture, Hardware, InputId, Scalar, Testing

from .spectypes import (
    DataLink,
    GitUrl,
    HttpUrl,
    LongText,
    Name,
    RelativePath,
    ShortText,
    Version,
    split_commas,
)

InputType = Literal["boolean", "int", "long", "float", "double", "string", "File", "Directory"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Source(_Strict):
    """Where the code is and how to build it."""

    url: GitUrl
    branch: ShortText | None = None
    tag: ShortText | None = None
    commit: Annotated[str, Field(pattern=r"^[0-9a-f]{7,64}$")] | None = None
    directory: RelativePath = "."
    dockerfile: RelativePath = "Dockerfile"
    architectures: Annotated[list[Architecture], Field(min_length=1, max_length=8)] = [
        "linux/amd64"
    ]
    build_args: dict[
        Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")], ShortText
    ] = {}

    @model_validator(mode="after")
    def _one_ref(self) -> Source:
        if self.branch and self.tag:
            raise ValueError("give either branch or tag, not both")
        if len(set(self.architectures)) != len(self.architectures):
            raise ValueError("architectures are listed more than once")
        return self


_PY_TYPES: dict[str, tuple[type, ...]] = {
    "boolean": (bool,),
    "int": (int,),
    "long": (int,),
    "float": (int, float),
    "double": (int, float),
    "string": (str,),
    "File": (str,),
    "Directory": (str,),
}


def value_fits(kind: str, value: Any) -> bool:
    """Whether `value` is a valid value of the CWL-style input type `kind`."""
    if isinstance(value, bool) and kind != "boolean":
        return False
    return isinstance(value, _PY_TYPES[kind])


class Input(_Strict):
    """One input of the app, typed as in CWL."""

    id: InputId
    type: InputType
    description: LongText | None = None
    default: Scalar | None = None

    @model_validator(mode="after")
    def _default_fits(self) -> Input:
        if self.default is not None and not value_fits(self.type, self.default):
            raise ValueError(f"default is not a valid {self.type}")
        return self


class Resource(_Strict):
    """A sensor or other resource the app uses (SAGE's `resources`)."""

    type: ShortText
    view: ShortText | None = None
    min_resolution: Annotated[str, Field(pattern=r"^\d{1,6}x\d{1,6}$")] | None = None


class Provenance(_Strict):
    """How the model inside the app was made, so that a result can be traced to its data."""

    method: LongText | None = Field(
        default=None, description="how the model was created and trained"
    )
    training_data: Annotated[list[DataLink], Field(max_length=64)] = []
    training_code: HttpUrl | GitUrl | None = None
    framework: ShortText | None = None
    framework_version: ShortText | None = None
    metrics: dict[ShortText, Scalar] = {}


class AppSpec(_Strict):
    """The whole description of one version of an app."""

    namespace: Name | None = None
    name: Name
    version: Version
    description: Annotated[str, Field(min_length=1, max_length=16_384)]
    keywords: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=64)]],
        BeforeValidator(split_commas),
        Field(max_length=64),
    ] = []
    authors: ShortText | list[ShortText] | None = None
    collaborators: ShortText | list[ShortText] | None = None
    homepage: HttpUrl | None = None
    funding: LongText | None = None
    license: ShortText | None = None
    source: Source
    # SAGE's command line of the app: `arguments` (a list, or one string), `baseCommand`.
    arguments: LongText | Annotated[list[Scalar], Field(max_length=256)] | None = None
    baseCommand: LongText | Annotated[list[str], Field(max_length=256)] | None = None  # noqa: N815
    depends_on: ShortText | list[ShortText] | None = None
    inputs: Annotated[list[Input], Field(max_length=128)] = []
    resources: Annotated[list[Resource], Field(max_length=64)] = []
    metadata: dict[str, Any] = {}
    hardware: Hardware = Field(default_factory=Hardware)
    provenance: Provenance | None = None
    testing: Testing | None = None


def cross_check(spec: AppSpec) -> list[dict[str, Any]]:
    """Problems between fields that a single field cannot see, in the same shape as field errors."""
    problems: list[dict[str, Any]] = []

    def problem(loc: list[str | int], msg: str) -> None:
        problems.append({"loc": [str(p) for p in loc], "msg": msg, "type": "value_error"})

    seen: set[str] = set()
    for i, item in enumerate(spec.inputs):
        if item.id in seen:
            problem(["inputs", i, "id"], f"input id {item.id!r} is used more than once")
        seen.add(item.id)
    for i, arch in enumerate(spec.hardware.architectures or []):
        if arch not in spec.source.architectures:
            problem(
                ["hardware", "architectures", i],
                f"{arch} is not built: add it to source.architectures",
            )
    if (testing := spec.testing) is not None:
        types = {item.id: item.type for item in spec.inputs}
        for key, value in testing.inputs.items():
            if key not in types:
                problem(["testing", "inputs", key], f"no input named {key!r} is declared in inputs")
            elif not value_fits(types[key], value):
                problem(["testing", "inputs", key], f"not a valid {types[key]}")
        if testing.timeout and testing.period and testing.timeout > testing.period:
            problem(
                ["testing", "timeout"], "a test that may outlast the period cannot prove the period"
            )
    return problems


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the app description, as served at `/api/schema/app.json`."""
    schema = AppSpec.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "/api/schema/app.json"
    return schema
