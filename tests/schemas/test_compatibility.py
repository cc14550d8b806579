"""The schema files: well-formed, self-contained, compatible across versions, and in step with
the Python events."""

from __future__ import annotations

import copy
import dataclasses
import io
import itertools
import json
import random
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.read import SchemaResolutionError
from fastavro.schema import parse_schema
from fastavro.utils import generate_many
from jobplane.events import EVENT_TYPES, AttemptRecord, Event, Failure, FailureKind
from jobplane.schemas import current_schema, schema_history, schemas_dir

NAMES = [t.schema_name for t in EVENT_TYPES]
NAMESPACE = "jobplane.events"
SAMPLES_PER_PAIR = 25


def version_chain(name: str) -> list[tuple[str, dict[str, Any]]]:
    """(label, schema) for every version, oldest first; the current file ends the chain."""
    history = schema_history(name)
    chain = [(f"v{version}", schema) for version, schema in history]
    current = current_schema(name)
    if current != history[-1][1]:
        chain.append(("current", current))
    return chain


def roundtrip(writer: Any, reader: Any, datum: Any) -> Any:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, writer, datum)
    buf.seek(0)
    return fastavro.schemaless_reader(buf, writer, reader)


def assert_can_read(writer_json: dict[str, Any], reader_json: dict[str, Any], seed: str) -> None:
    """Data written with `writer_json` reads with `reader_json`, through Avro schema resolution,
    and the fields both versions declare identically keep their values."""
    writer, reader = parse_schema(writer_json), parse_schema(reader_json)
    unchanged = [
        f["name"] for f in writer_json["fields"] if any(f == g for g in reader_json["fields"])
    ]
    random.seed(seed)
    for datum in generate_many(writer, SAMPLES_PER_PAIR):
        as_written = roundtrip(writer, writer, datum)
        as_read = roundtrip(writer, reader, datum)
        assert {f["name"] for f in reader_json["fields"]} == set(as_read)
        for name in unchanged:
            assert as_read[name] == as_written[name], name


# --- files ------------------------------------------------------------------------------------


def all_schema_files() -> list[Path]:
    root = schemas_dir()
    return sorted([*root.glob("*.avsc"), *root.glob("history/*/v*.avsc")])


def test_every_event_type_has_a_current_file_and_a_history() -> None:
    root = schemas_dir()
    assert {p.stem for p in root.glob("*.avsc")} == set(NAMES)
    assert {p.name for p in (root / "history").iterdir()} == set(NAMES)


@pytest.mark.parametrize(
    "path", all_schema_files(), ids=lambda p: str(p.relative_to(schemas_dir()))
)
def test_file_parses_alone(path: Path) -> None:
    schema = json.loads(path.read_text(encoding="utf-8"))
    named: dict[str, Any] = {}  # nothing defined elsewhere: every named type must be inline
    parse_schema(schema, named_schemas=named)
    assert schema["type"] == "record"
    assert all(name.startswith(NAMESPACE + ".") for name in named)


@pytest.mark.parametrize("name", NAMES)
def test_history_is_numbered_from_one_and_current_is_newest(name: str) -> None:
    history = schema_history(name)
    assert [version for version, _ in history] == list(range(1, len(history) + 1))
    current = current_schema(name)
    # The current file is the newest version, or a newer one not yet recorded, never a revert.
    assert current not in [schema for _, schema in history[:-1]]


# --- compatibility between consecutive versions ------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_consecutive_versions_are_backward_and_forward_compatible(name: str) -> None:
    chain = version_chain(name)
    assert chain
    for (old_label, old), (new_label, new) in itertools.pairwise(chain):
        try:
            assert_can_read(writer_json=old, reader_json=new, seed="backward")  # new reads old
            assert_can_read(writer_json=new, reader_json=old, seed="forward")  # old reads new
        except (SchemaResolutionError, AssertionError) as exc:
            pytest.fail(f"{name} {old_label} -> {new_label} is incompatible: {exc!r}")


@pytest.mark.parametrize("name", NAMES)
def test_each_version_reads_its_own_data(name: str) -> None:
    # Also what makes the pair tests meaningful while every history has a single version.
    for _, schema in version_chain(name):
        assert_can_read(schema, schema, seed=name)


def changed(name: str, change: Any) -> dict[str, Any]:
    schema = copy.deepcopy(current_schema(name))
    change(schema["fields"])
    return schema


@pytest.mark.parametrize(
    ("change", "direction"),
    [
        pytest.param(
            lambda f: f.append({"name": "x", "type": "int"}), "backward", id="add-no-default"
        ),
        pytest.param(lambda f: f.pop(1), "forward", id="remove-no-default"),
        pytest.param(lambda f: f[-1].update(name="result_v2"), "backward", id="rename"),
        pytest.param(
            lambda f: f[-1].update(name="renamed", default="{}"), "forward", id="rename-default"
        ),
        pytest.param(lambda f: f[1].update(type="int"), "backward", id="change-type"),
    ],
)
def test_the_check_catches_incompatible_changes(change: Any, direction: str) -> None:
    old = current_schema("job_completed")
    new = changed("job_completed", change)
    writer, reader = (old, new) if direction == "backward" else (new, old)
    with pytest.raises(SchemaResolutionError):
        assert_can_read(writer, reader, seed="bad")


def test_the_check_accepts_a_compatible_change() -> None:
    old = current_schema("job_completed")
    new = changed(
        "job_completed",
        lambda f: f.append({"name": "tags", "type": ["null", "string"], "default": None}),
    )
    assert_can_read(old, new, seed="good")
    assert_can_read(new, old, seed="good")


# --- schemas and dataclasses stay in step ------------------------------------------------------


def named_types(schema: Any, found: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every named type defined in `schema`, by short name."""
    if isinstance(schema, list):
        for branch in schema:
            named_types(branch, found)
    elif isinstance(schema, dict):
        if schema.get("type") in ("record", "enum", "fixed"):
            found[schema["name"]] = schema
        for f in schema.get("fields", []):
            named_types(f["type"], found)
        named_types(schema.get("items"), found)
    return found


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.__name__)
def test_schema_fields_match_the_dataclass(event_type: type[Event]) -> None:
    schema = current_schema(event_type.schema_name)
    assert schema["name"] == event_type.__name__
    assert schema["namespace"] == NAMESPACE
    assert [f["name"] for f in schema["fields"]] == field_names(event_type)
    nested = named_types(schema, {})
    if "Failure" in nested:
        assert [f["name"] for f in nested["Failure"]["fields"]] == field_names(Failure)
        kind = nested["FailureKind"]
        assert kind["symbols"] == [k.value for k in FailureKind]
        assert kind["default"] in kind["symbols"]  # old readers map unknown kinds to it
    if "AttemptRecord" in nested:
        assert [f["name"] for f in nested["AttemptRecord"]["fields"]] == field_names(AttemptRecord)


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.__name__)
def test_schema_defaults_match_the_dataclass(event_type: type[Event]) -> None:
    fields = {f.name: f for f in dataclasses.fields(event_type)}
    for f in current_schema(event_type.schema_name)["fields"]:
        if "default" in f:
            assert fields[f["name"]].default == f["default"], f["name"]


def test_common_fields_come_first_in_order() -> None:
    common = field_names(Event)
    assert common == [
        "event_id",
        "job_id",
        "app_id",
        "user_id",
        "attempt",
        "occurred_at",
        "trace_id",
        "job_type",
    ]
    for name in NAMES:
        assert [f["name"] for f in current_schema(name)["fields"]][: len(common)] == common
