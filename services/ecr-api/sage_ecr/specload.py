"""Turn a submitted body (JSON or YAML) into plain data without letting it exhaust the server.

YAML is read with the safe loader only, its depth and its size with every alias expanded checked
before anything is built: a "billion laughs" document of a few hundred bytes expands to billions
of nodes, and is refused here (422) instead of in whatever walks the result later.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from sage_common.errors import BadRequest, Unprocessable

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # type: ignore[assignment]


class DocumentTooComplex(Unprocessable):
    """The document nests too deeply or expands to too many nodes."""


_STR = "tag:yaml.org,2002:str"
_NUMBERS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


def load_document(body: bytes, content_type: str, *, max_depth: int, max_nodes: int) -> Any:
    """The data in `body`: JSON when the content type says so, else YAML (a superset of JSON)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8 text") from None
    if not text.strip():
        raise BadRequest("the body is empty: send the app description as JSON or YAML")
    if content_type == "application/json":
        try:
            data = json.loads(text)
        except RecursionError:
            raise DocumentTooComplex(f"the document nests deeper than {max_depth} levels") from None
        except ValueError as exc:
            raise BadRequest(f"the body is not valid JSON: {exc}") from None
        _check_plain(data, max_depth, max_nodes)
        return data
    return load_yaml(text, max_depth=max_depth, max_nodes=max_nodes)


def load_yaml(text: str, *, max_depth: int, max_nodes: int) -> Any:
    """`yaml.safe_load`, refusing deep nesting and alias expansion beyond `max_nodes`."""
    try:
        _check_depth(text, max_depth)
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                raise BadRequest("the body holds no YAML document")
            _check_expansion(node, max_nodes)
            _version_as_written(node)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise BadRequest(f"the body is not valid YAML: {_first_line(exc)}") from None
    except RecursionError:
        raise DocumentTooComplex(f"the document nests deeper than {max_depth} levels") from None


def _version_as_written(root: yaml.Node) -> None:
    """`version: 1.10` is the version "1.10" (a YAML float would be 1.1), `version: 2` is "2"."""
    if not isinstance(root, yaml.MappingNode):
        return
    for key, value in root.value:
        if (
            isinstance(key, yaml.ScalarNode)
            and key.value == "version"
            and isinstance(value, yaml.ScalarNode)
            and value.tag in _NUMBERS
        ):
            value.tag = _STR


def _first_line(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark else str(problem)


def _check_depth(text: str, max_depth: int) -> None:
    """Scan parser events (no objects are built) and stop at the first level past `max_depth`."""
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > max_depth:
                raise DocumentTooComplex(f"the document nests deeper than {max_depth} levels")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _check_expansion(root: yaml.Node, max_nodes: int) -> None:
    """Count nodes as if aliases were copies (memoised per node); refuse cycles and big totals."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            size = 1 + sum(sizes[id(child)] for child in _children(node))
            if size > max_nodes:
                raise DocumentTooComplex(
                    f"the document expands to more than {max_nodes} nodes "
                    "(an alias counts as a copy of what it refers to)"
                )
            sizes[key] = size
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise DocumentTooComplex("the document refers to itself through an alias")
        on_path.add(key)
        stack.append((node, True))
        # A child on the path is popped before this node's marker: the check above refuses it.
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_plain(data: Any, max_depth: int, max_nodes: int) -> None:
    """The same limits for JSON, which has no aliases: depth and node count, iteratively."""
    count = 0
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > max_nodes:
            raise DocumentTooComplex(f"the document has more than {max_nodes} nodes")
        if isinstance(value, dict):
            children: Any = list(value.values())
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > max_depth:
            raise DocumentTooComplex(f"the document nests deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in children)
