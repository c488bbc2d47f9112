"""Descriptions as SAGE authors write them (`corpus/`, shaped like published plugins' files) are
read into the model, with a warning for each thing the author should know about."""

from __future__ import annotations

from pathlib import Path

import pytest

from sage_common.errors import Unprocessable
from sage_ecr.service_submit import Submission, validate_spec
from sage_ecr.spec_sage import read_sage
from sage_ecr.specload import load_document

CORPUS = Path(__file__).parent / "corpus"
LIMITS = {"max_depth": 32, "max_nodes": 20_000}
REQUEST = {"namespace": "lab", "url": "https://git.example.org/lab/from-request.git"}


def read(name: str, given: dict[str, str] | None = None) -> Submission:
    path = CORPUS / name
    kind = "application/json" if path.suffix == ".json" else "text/plain"
    return validate_spec(load_document(path.read_bytes(), kind, **LIMITS), given)


def stored(name: str, given: dict[str, str] | None = None) -> dict:
    return read(name, given).stored()


@pytest.mark.parametrize(
    "name", sorted(p.name for p in CORPUS.iterdir() if p.name != "BirdSong.yaml")
)
def test_every_sage_style_description_in_the_corpus_is_accepted(name):
    submission = read(name, REQUEST)
    assert submission.spec.namespace and submission.spec.source.url


def test_four_part_versions_and_sage_strings_are_kept():
    sub = read("thermal-sampler.yaml", {"namespace": "lab"})
    assert sub.spec.version == "1.22.4.13" and sub.spec.namespace == "lab"
    assert sub.spec.keywords == ["thermal", "raw", "celsius", "IR"]
    assert sub.spec.collaborators == "Ada Lovelace, Charles Babbage*, Grace Hopper"
    assert sub.warnings == []


def test_an_unquoted_two_part_version_is_read_as_written():
    assert read("rain-classifier.yaml").spec.version == "1.10"


def test_testing_under_source_is_the_apps_testing():
    sub = read("sound-events.yaml", {"namespace": "lab"})
    assert sub.spec.testing is not None and sub.spec.testing.command == ["test.py"]
    assert "testing" not in sub.stored()["source"]
    assert sub.warnings == []


def test_top_level_testing_wins_over_the_one_under_source_with_a_warning():
    sub = read("motion-tracker.yaml")
    assert sub.spec.testing is not None and sub.spec.testing.command == ["test.py"]
    assert sub.warnings == ["'source.testing' ignored: 'testing' is given at the top level"]


def test_dashed_input_ids_are_accepted_and_tested_by_name():
    sub = read("sky-cover.yaml")
    assert [i.id for i in sub.spec.inputs] == ["interval", "sampling-interval"]
    assert sub.spec.testing is not None and sub.spec.testing.inputs == {"sampling-interval": 5}


def test_empty_strings_are_absent_fields_and_the_request_gives_the_url():
    doc = stored("wildlife-trap.yaml", REQUEST)
    assert doc["homepage"] is None and doc["license"] is None and doc["funding"] is None
    assert doc["source"]["url"] == REQUEST["url"]
    doc = stored("weather-station.yaml", REQUEST)
    assert doc["source"]["url"] == REQUEST["url"] and doc["source"]["branch"] == "main"


def test_without_a_namespace_or_url_the_answer_says_where_to_give_them():
    with pytest.raises(Unprocessable) as info:
        read("wildlife-trap.yaml")
    problems = {".".join(e["loc"]): e["msg"] for e in info.value.errors or []}
    assert "--namespace" in problems["namespace"]
    assert "--url" in problems["source.url"]
    assert "namespace" in info.value.detail and "source.url" in info.value.detail


def test_unknown_fields_are_kept_where_they_were_written_with_a_warning_each():
    sub = read("object-counter.yaml")
    doc = sub.stored()
    assert doc["maintainers"] == ["pete@example.org"]
    assert doc["source"]["submodules"] is True
    assert doc["inputs"][2] == {
        "id": "-ip",
        "type": "string",
        "description": None,
        "default": None,
        "unit": "address",
    }
    assert sub.warnings == [
        "unknown field 'maintainers' kept as is",
        "unknown field 'source.submodules' kept as is",
        "unknown field 'inputs.2.unit' kept as is",
    ]


def test_the_old_sage_json_with_a_sources_list_is_read():
    sub = read("smoke-detector.json")
    doc = sub.stored()
    assert doc["source"]["url"] == "https://git.example.org/lab/smoke-detector.git"
    assert doc["source"]["branch"] == "master" and "name" not in doc["source"]
    assert doc["source"]["build_args"]["TEST_FLAG"] == "False"
    assert "arguments" not in doc and "owner" not in doc  # empty; set by the ECR
    assert "'sources' (SAGE's older list) read as 'source'" in sub.warnings
    assert "field 'owner' is set by the ECR: the description's ignored" in sub.warnings


def test_the_oldest_sage_json_with_a_source_string_and_arguments_is_read():
    sub = read("hello-world.json")
    doc = sub.stored()
    assert doc["source"] == {
        **doc["source"],
        "url": "https://git.example.org/lab/hello-world.git",
        "branch": "master",
        "dockerfile": "Dockerfile",
        "architectures": ["linux/amd64", "linux/arm/v7", "linux/arm64"],
    }
    assert doc["arguments"] == ["speed", "5"]
    assert doc["metadata"] == {"my-science-data": 12345}
    assert "id" not in doc
    assert any("oldest form" in w for w in sub.warnings)


def test_a_name_with_capitals_is_refused_saying_what_to_write_unless_the_url_names_it():
    with pytest.raises(Unprocessable) as info:
        read("BirdSong.yaml")
    assert "write 'birdsong_plugin'" in info.value.detail
    sub = read("BirdSong.yaml", {"namespace": "lab", "name": "birdsong", "version": "0.0.1"})
    assert sub.spec.name == "birdsong"
    assert sub.warnings == [
        "name 'BirdSong_Plugin' in the description replaced by 'birdsong' from the request"
    ]


def test_request_fields_replace_the_files_and_a_branch_replaces_a_tag():
    raw = {
        "name": "x1",
        "version": "1.0",
        "description": "d",
        "namespace": "old",
        "source": {"url": "https://a.example/x.git", "tag": "v1"},
    }
    reading = read_sage(raw, {"namespace": "new", "branch": "dev"})
    assert reading.data["namespace"] == "new"
    assert reading.data["source"] == {"url": "https://a.example/x.git", "branch": "dev"}
    assert raw["namespace"] == "old"  # the parsed body is left as it was
    assert len(reading.warnings) == 1 and "'old'" in reading.warnings[0]


@pytest.mark.parametrize("body", [[1, 2], "just text", 42])
def test_a_description_that_is_not_a_mapping_is_refused(body):
    with pytest.raises(Unprocessable, match="must be a mapping"):
        validate_spec(body)


def test_a_missing_version_says_where_to_give_it():
    raw = {"name": "x1", "namespace": "lab", "description": "d", "source": {"url": "https://a/b"}}
    with pytest.raises(Unprocessable) as info:
        validate_spec(raw)
    assert "version: Field required: write version:" in info.value.detail
    assert validate_spec(raw, {"version": "2.0"}).spec.version == "2.0"
