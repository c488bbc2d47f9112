"""Read an app description as SAGE authors write it, before the strict model sees it.

Published files use forms the model does not (`testing` under `source`, "" for absent fields,
the old `sources: [...]` or `url#branch#file`, unknown fields): here they take the model's shape,
with a warning for each change and unknown fields set aside to be stored as written.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from .spec import AppSpec, Hardware, Input, Provenance, Resource, Source, Testing

# Members of the app document that the ECR sets; a description cannot write them.
RESERVED = frozenset(
    {
        "id",
        "owner",
        "frozen",
        "state",
        "public",
        "build_number",
        "image",
        "profile",
        "review",
        "time_created",
        "time_last_updated",
        "warnings",
    }
)
_OBJECTS: dict[str, type[BaseModel]] = {
    "source": Source,
    "hardware": Hardware,
    "provenance": Provenance,
    "testing": Testing,
}
_LISTS: dict[str, type[BaseModel]] = {"inputs": Input, "resources": Resource}
# Where the request may name what the file leaves out: (field, its place in the description).
REQUEST_FIELDS = {
    "namespace": ("namespace",),
    "name": ("name",),
    "version": ("version",),
    "url": ("source", "url"),
    "branch": ("source", "branch"),
    "tag": ("source", "tag"),
}


@dataclass
class Reading:
    """The description in the model's shape, what was set aside, and what to tell the author."""

    data: dict[str, Any]
    extras: dict[tuple[str | int, ...], Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _dotted(path: tuple[str | int, ...]) -> str:
    return ".".join(str(p) for p in path)


def _drop_empty(data: dict[str, Any]) -> dict[str, Any]:
    """`homepage: ""` and `license:` (null) mean "not given", as SAGE's own form writes them."""
    return {k: v for k, v in data.items() if v is not None and v != ""}


def _old_source(data: dict[str, Any], reading: Reading) -> None:
    """SAGE's older `sources: [...]` list, `source: "url#branch#dockerfile"` and `architecture`."""
    sources = data.pop("sources", None)
    if isinstance(sources, list) and "source" not in data:
        chosen = [s for s in sources if isinstance(s, dict)]
        named = [s for s in chosen if s.get("name") == "default"]
        if chosen:
            first = dict((named or chosen)[0])
            first.pop("name", None)
            data["source"] = first
            reading.warnings.append("'sources' (SAGE's older list) read as 'source'")
            if len(chosen) > 1:
                reading.warnings.append("'sources' lists more than one source: only one is built")
    elif sources is not None:
        reading.warnings.append("'sources' ignored: 'source' is given")
    if isinstance(data.get("source"), str):
        url, _, rest = data["source"].partition("#")
        branch, _, dockerfile = rest.partition("#")
        source = {"url": url, "branch": branch, "dockerfile": dockerfile.removeprefix("./")}
        data["source"] = _drop_empty(source)
        reading.warnings.append("'source' written as 'url#branch#dockerfile' (SAGE's oldest form)")
    for old in ("architecture", "architectures"):
        if old in data and isinstance(data.get("source", {}), dict):
            value = data.pop(old)
            source = data.setdefault("source", {})
            if "architectures" not in source:
                source["architectures"] = value
            reading.warnings.append(f"top-level {old!r} read as 'source.architectures'")


def _nested_testing(data: dict[str, Any], reading: Reading) -> None:
    """Many published apps write `testing` under `source`; the top-level one wins when both are."""
    source = data.get("source")
    if not isinstance(source, dict) or "testing" not in source:
        return
    nested = source.pop("testing")
    if data.get("testing") in (None, ""):
        data["testing"] = nested
    else:
        reading.warnings.append("'source.testing' ignored: 'testing' is given at the top level")


def _set_aside(
    data: dict[str, Any], model: type[BaseModel], path: tuple[str | int, ...], reading: Reading
) -> dict[str, Any]:
    """The known fields of `data` (empty ones dropped); unknown ones go to `reading.extras`."""
    known: dict[str, Any] = {}
    for key, value in _drop_empty(data).items():
        key = str(key)
        if key in model.model_fields:
            known[key] = value
        elif not path and key in RESERVED:
            reading.warnings.append(f"field {key!r} is set by the ECR: the description's ignored")
        else:
            reading.extras[(*path, key)] = value
            reading.warnings.append(f"unknown field {_dotted((*path, key))!r} kept as is")
    for key, inner in _OBJECTS.items():
        if model is AppSpec and isinstance(known.get(key), dict):
            known[key] = _set_aside(known[key], inner, (*path, key), reading)
    for key, inner in _LISTS.items():
        if model is AppSpec and isinstance(known.get(key), list):
            known[key] = [
                _set_aside(item, inner, (*path, key, i), reading)
                if isinstance(item, dict)
                else item
                for i, item in enumerate(known[key])
            ]
    return known


def _apply_request(data: dict[str, Any], given: dict[str, str], reading: Reading) -> None:
    """The request's values (URL path, query or form) fill the description, and win over it."""
    for key, value in given.items():
        *parents, last = REQUEST_FIELDS[key]
        target = data
        for part in parents:
            if not isinstance(target.get(part), dict):
                target[part] = {}
            target = target[part]
        before = target.get(last)
        if before not in (None, "") and str(before) != value:
            reading.warnings.append(
                f"{'.'.join(REQUEST_FIELDS[key])} {before!r} in the description replaced by "
                f"{value!r} from the request"
            )
        target[last] = value
        if key == "branch":
            target.pop("tag", None)
        elif key == "tag":
            target.pop("branch", None)


def read_sage(raw: dict[str, Any], given: dict[str, str] | None = None) -> Reading:
    """`raw` (the parsed body, not changed) in the model's shape, with extras and warnings."""
    data = copy.deepcopy(raw)
    reading = Reading(data={})
    _old_source(data, reading)
    _nested_testing(data, reading)
    if isinstance(data.get("source"), dict):
        data["source"] = _drop_empty(data["source"])
    _apply_request(data, dict(given or {}), reading)
    reading.data = _set_aside(data, AppSpec, (), reading)
    return reading


def put_back(doc: dict[str, Any], extras: dict[tuple[str | int, ...], Any]) -> dict[str, Any]:
    """The stored document with the fields set aside put back where they were written."""
    for path, value in extras.items():
        target: Any = doc
        for part in path[:-1]:
            target = target[part]
        if isinstance(target, dict):
            target.setdefault(str(path[-1]), value)
    return doc
