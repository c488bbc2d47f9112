"""The app description's model: the rules of each field, every problem named with its path.

The model itself forbids unknown fields (its JSON Schema is strict, for editors); the server reads
SAGE's looser forms first (`test_spec_sage.py`)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sage_common.appspec import MAX_TEST_COPIES, MAX_TEST_REPETITIONS, MAX_TEST_TIMEOUT_SECONDS
from sage_ecr.spec import AppSpec, cross_check, json_schema
from sage_ecr.spectypes import version_key


def make(**overrides):
    data = {
        "namespace": "lab",
        "name": "car-counter",
        "version": "1.0.0",
        "description": "counts cars",
        "source": {"url": "https://git.example.org/lab/car-counter.git"},
    }
    data.update(overrides)
    return data


def errors(data) -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        AppSpec.model_validate(data)
    return {".".join(str(p) for p in e["loc"]): e["msg"] for e in info.value.errors()}


def test_minimal_description_gets_sage_defaults():
    spec = AppSpec.model_validate(make())
    assert spec.source.architectures == ["linux/amd64"]
    assert spec.source.dockerfile == "Dockerfile" and spec.source.directory == "."
    assert spec.hardware.gpu == "none"
    assert cross_check(spec) == []


def test_every_problem_is_reported_with_its_path():
    found = errors(
        make(
            version="1.0+build.5",
            name="Bad_Name!",
            color="blue",
            source={"url": "not a url", "architectures": ["linux/s390x"]},
            inputs=[{"id": "speed", "type": "int", "default": "fast"}],
        )
    )
    assert "version" in found and "name" in found
    assert found["color"] == "Extra inputs are not permitted"
    assert "source.url" in found
    assert "source.architectures.0" in found
    assert any(k.startswith("inputs.0") for k in found)


@pytest.mark.parametrize(
    "version",
    ["1.0.0", "0.1.2-rc.1", "10.20.30", "1.0.0-alpha.beta", "1.0", "0.24.8.20", "1.22.4.13"]
    + ["v1.0.0", "01.0.0", "latest", "0.0.0-0", "g60c72a2", "x" * 128],
)
def test_any_version_that_can_be_a_registry_tag_is_accepted(version):
    assert AppSpec.model_validate(make(version=version)).version == version


@pytest.mark.parametrize(
    ("version", "write"),
    [("1.0.0+build.5", "1.0.0-build.5"), ("1 0", "1-0"), ("-1.0", "1.0"), (".1", "1"), ("", None)]
    + [("x" * 129, None), ("1.0/2", "1.0-2")],
)
def test_a_version_that_cannot_be_a_tag_is_refused_saying_what_to_write(version, write):
    message = errors(make(version=version))["version"]
    assert "cannot be a registry tag" in message
    if write:
        assert f"write {write!r}" in message


def test_yaml_numbers_as_versions_are_read_as_text():
    assert AppSpec.model_validate(make(version=1.5)).version == "1.5"
    assert AppSpec.model_validate(make(version=2)).version == "2"


@pytest.mark.parametrize("input_id", ["sampling-interval", "out_dir", "no-cuda", "-ip", "n", "a.b"])
def test_input_ids_are_what_sage_apps_write(input_id):
    spec = AppSpec.model_validate(
        make(inputs=[{"id": input_id, "type": "int"}], testing={"inputs": {input_id: 3}})
    )
    assert spec.inputs[0].id == input_id and cross_check(spec) == []


@pytest.mark.parametrize("input_id", ["", "two words", "---x", "a=b", "x" * 70])
def test_input_ids_that_cannot_be_flags_are_refused(input_id):
    assert "inputs.0.id" in errors(make(inputs=[{"id": input_id, "type": "int"}]))


def test_a_name_with_capitals_is_refused_saying_what_to_write():
    message = errors(make(name="BirdNET_Plugin"))["name"]
    assert "capital letters" in message and "write 'birdnet_plugin'" in message
    assert "write 'bad-name'" in errors(make(name="bad name!"))["name"]


@pytest.mark.parametrize("name", ["a", "-lead", "trail-", "UPPER", "two..dots", "x" * 65, "sp ace"])
def test_name_rules(name):
    assert "name" in errors(make(name=name))


def test_keywords_may_be_sage_style_comma_separated_text():
    spec = AppSpec.model_validate(make(keywords="cars, traffic ,  vision"))
    assert spec.keywords == ["cars", "traffic", "vision"]


def test_sizes_and_durations_are_normalised():
    spec = AppSpec.model_validate(
        make(
            hardware={"min_memory": "512Mi", "gpu": "required"},
            testing={"command": ["run"], "timeout": "2m", "period": "5m"},
        )
    )
    assert spec.hardware.min_memory == 512 * 1024 * 1024
    assert spec.testing is not None and spec.testing.timeout == 120 and spec.testing.period == 300


def test_testing_accepts_exactly_what_the_profiler_honours():
    most = {"repetitions": MAX_TEST_REPETITIONS, "concurrency": MAX_TEST_COPIES, "timeout": "1h"}
    spec = AppSpec.model_validate(make(testing=most))
    assert spec.testing is not None
    assert (spec.testing.repetitions, spec.testing.concurrency) == (10, 8)
    assert spec.testing.timeout == MAX_TEST_TIMEOUT_SECONDS
    found = errors(
        make(
            testing={
                "repetitions": MAX_TEST_REPETITIONS + 1,
                "concurrency": MAX_TEST_COPIES + 1,
                "timeout": MAX_TEST_TIMEOUT_SECONDS + 1,
            }
        )
    )
    assert set(found) == {"testing.repetitions", "testing.concurrency", "testing.timeout"}
    assert "less than or equal to 10" in found["testing.repetitions"]
    assert "less than or equal to 8" in found["testing.concurrency"]
    assert "less than or equal to 3600" in found["testing.timeout"]
    testing = json_schema()["$defs"]["Testing"]["properties"]
    assert testing["concurrency"]["maximum"] == MAX_TEST_COPIES
    assert {"type": "integer", "minimum": 1, "maximum": MAX_TEST_REPETITIONS} in testing[
        "repetitions"
    ]["anyOf"]


def test_repetitions_and_timeout_left_out_are_left_to_the_profiler():
    spec = AppSpec.model_validate(make(testing={"command": ["run"]}))
    assert spec.testing is not None
    assert spec.testing.repetitions is None and spec.testing.timeout is None
    stored = spec.model_dump(mode="json")["testing"]
    assert stored["repetitions"] is None and stored["timeout"] is None


def test_branch_and_tag_are_exclusive():
    found = errors(make(source={"url": "https://g.example/x.git", "branch": "main", "tag": "v1"}))
    assert "source" in found


def test_paths_must_stay_inside_the_repository():
    assert "source.dockerfile" in errors(
        make(source={"url": "https://g.example/x.git", "dockerfile": "../../etc/passwd"})
    )


def test_training_data_links_are_object_store_buckets_or_urls():
    ok = AppSpec.model_validate(
        make(
            provenance={
                "training_data": ["sage://3f2a-bucket/images/", "https://data.example.org/set"],
                "framework": "pytorch",
                "metrics": {"mAP": 0.61},
            }
        )
    )
    assert ok.provenance is not None and len(ok.provenance.training_data) == 2
    assert "provenance.training_data.0" in errors(make(provenance={"training_data": ["s3://x/y"]}))


def test_cross_checks_name_the_fields_they_are_about():
    spec = AppSpec.model_validate(
        make(
            inputs=[{"id": "n", "type": "int"}, {"id": "n", "type": "int"}],
            hardware={"architectures": ["linux/arm64"]},
            testing={"inputs": {"n": "x", "ghost": 1}, "timeout": 600, "period": 60},
        )
    )
    locs = {".".join(p["loc"]) for p in cross_check(spec)}
    assert locs == {
        "inputs.1.id",
        "hardware.architectures.0",
        "testing.inputs.n",
        "testing.inputs.ghost",
        "testing.timeout",
    }


def test_json_schema_describes_the_fields_and_forbids_others():
    schema = json_schema()
    assert schema["additionalProperties"] is False
    assert {"name", "version", "source", "hardware", "provenance", "testing"} <= set(
        schema["properties"]
    )
    assert set(schema["required"]) == {"name", "version", "description", "source"}


def test_version_key_sorts_by_semver_precedence():
    ordered = ["0.9.0", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-beta", "1.0.0", "1.2.0", "1.10.0"]
    assert sorted(ordered, key=version_key) == ordered


def test_version_key_sorts_two_to_four_numbers_numerically_other_tags_first():
    ordered = [
        "g60c72a2",
        "latest",
        "0.9",
        "0.24.8.20",
        "1.0.0-rc.1",
        "1.0",
        "1.0.0",
        "v1.0.0",
        "1.0.0.1",
        "1.2",
        "1.10",
        "1.22.4.9",
        "1.22.4.13",
        "2.0.0-alpha",
        "2.0.0",
        "10.0",
    ]
    assert sorted(reversed(ordered), key=version_key) == ordered
    assert len({version_key(v) for v in ordered}) == len(ordered)  # never two versions on one key


def test_version_key_of_semver_is_what_migration_0004_rewrites_the_old_key_to():
    old = {
        "1.2.3": "0000000001.0000000002.0000000003~",
        "1.0.0-rc.1": "0000000001.0000000000.0000000000-rc.0000000001",
    }
    for version, key in old.items():
        assert version_key(version) == "1" + key[:32] + ".0000000000" + key[32:] + " " + version


def test_the_documented_example_is_a_valid_description():
    import re
    from pathlib import Path

    import yaml

    doc = Path(__file__).parents[3] / "docs" / "app-spec.md"
    example = re.search(r"```yaml\n(.*?)```", doc.read_text(), re.S)
    assert example is not None
    spec = AppSpec.model_validate(yaml.safe_load(example.group(1)))
    assert cross_check(spec) == []
    assert spec.testing is not None and spec.testing.period == 300


def test_testing_user_is_root_or_a_numeric_uid_as_the_profiler_reads_it() -> None:
    base = {
        "namespace": "lab",
        "name": "app",
        "version": "1.0.0",
        "description": "d",
        "source": {"url": "https://example.org/app.git"},
    }
    for user in ("root", "1000", "1000:1000"):
        assert AppSpec.model_validate({**base, "testing": {"user": user}}).testing.user == user
    for user in ("admin", "1000:", "-1", "0:root"):
        with pytest.raises(ValidationError):
            AppSpec.model_validate({**base, "testing": {"user": user}})
