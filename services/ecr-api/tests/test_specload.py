"""Loading submitted JSON and YAML without letting a small body exhaust the server."""

from __future__ import annotations

import json

import pytest

from sage_common.errors import BadRequest, Unprocessable
from sage_ecr.specload import load_document

LIMITS = {"max_depth": 32, "max_nodes": 20_000}

BILLION_LAUGHS = """
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def load(text: str, content_type: str = "application/yaml"):
    return load_document(text.encode(), content_type, **LIMITS)


def test_yaml_and_json_bodies_give_the_same_data():
    assert load("name: x\nlist: [1, 2]\n") == {"name": "x", "list": [1, 2]}
    assert load('{"name": "x", "list": [1, 2]}', "application/json") == {
        "name": "x",
        "list": [1, 2],
    }
    # SAGE's curl examples send YAML as form data; any other type is read as YAML.
    assert load("name: x", "application/x-www-form-urlencoded") == {"name": "x"}


def test_small_anchors_and_merge_keys_still_work():
    data = load("base: &b {cpu: 1}\nother:\n  <<: *b\n  mem: 2\n")
    assert data["other"] == {"cpu": 1, "mem": 2}


def test_billion_laughs_is_refused_before_it_expands():
    with pytest.raises(Unprocessable, match="expands to more than"):
        load(BILLION_LAUGHS)


def test_deep_nesting_is_refused():
    with pytest.raises(Unprocessable, match="nests deeper"):
        load("a: " + "[" * 40 + "]" * 40)
    with pytest.raises(Unprocessable, match="nests deeper"):
        load("[" * 100_000 + "]" * 100_000)


def test_deep_json_is_refused_too():
    with pytest.raises(Unprocessable, match="nests deeper"):
        load(
            json.dumps({"a": "[" * 40 + "]" * 40}).replace('"[', "[").replace(']"', "]"),
            "application/json",
        )
    with pytest.raises(Unprocessable, match="nests deeper"):
        load("[" * 100_000 + "]" * 100_000, "application/json")


def test_a_document_that_contains_itself_is_refused():
    with pytest.raises(Unprocessable, match="refers to itself"):
        load("a: &a [1, *a]")


def test_python_tags_are_not_constructed():
    with pytest.raises(BadRequest, match="not valid YAML"):
        load("x: !!python/object/apply:os.system ['true']")


@pytest.mark.parametrize("body", [b"", b"   \n", b"\xff\xfe", b"a: [1\n", b"a: 1\n---\nb: 2\n"])
def test_unreadable_bodies_are_bad_requests(body):
    with pytest.raises(BadRequest):
        load_document(body, "application/yaml", **LIMITS)


def test_malformed_json_is_a_bad_request():
    with pytest.raises(BadRequest, match="not valid JSON"):
        load("{nope", "application/json")


def test_a_yaml_version_is_kept_as_written_not_read_as_a_number():
    data = load("version: 1.10\nother: 1.10\nlist: [version]\n")
    assert data == {"version": "1.10", "other": 1.1, "list": ["version"]}
    assert load("version: 2\n") == {"version": "2"}
