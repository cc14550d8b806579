"""Single-object encoding of events: round trips, the fingerprint, errors, older writers."""

from __future__ import annotations

import copy
import io
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.schema import parse_schema, to_parsing_canonical_form
from jobplane.codec import (
    MARKER,
    DecodeError,
    SchemaRegistry,
    decode,
    default_registry,
    encode,
    fingerprint_of,
    known_schemas,
    schema_fingerprint,
    single_object_header,
)
from jobplane.events import (
    EVENT_TYPES,
    AttemptRecord,
    Event,
    Failure,
    FailureKind,
    JobCompleted,
    JobDead,
    JobFailed,
    JobRequested,
    JobRetryScheduled,
    to_record,
)
from jobplane.schemas import current_schema, schemas_dir

T0 = datetime(2025, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
COMMON: dict[str, Any] = {
    "job_id": "job-1",
    "app_id": "app-1",
    "user_id": "user-1",
    "attempt": 3,
    "trace_id": "trace-1",
    "occurred_at": T0,
}
FAILURE = Failure(kind=FailureKind.TIMEOUT, message="no answer in 30 s", retryable=True)


def samples() -> list[Event]:
    return [
        JobRequested(**COMMON, job_type="thumbs", payload='{"n": 3}'),
        JobFailed(**COMMON, job_type="thumbs", payload="{}", timeout_seconds=5, failure=FAILURE),
        JobRetryScheduled(
            **COMMON,
            job_type="thumbs",
            payload="{}",
            failure=FAILURE,
            retry_number=3,
            due_at=T0 + timedelta(minutes=4),
        ),
        JobCompleted(**COMMON, job_type="thumbs", result="[]"),
        JobDead(
            **COMMON,
            job_type="thumbs",
            reason="undecodable event",
            attempts=(AttemptRecord(attempt=1, dispatched_at=T0, failure=FAILURE),),
            raw_event=b"\xc3\x01garbage",
            source_topic="job.failed",
        ),
    ]


def rabin_fingerprint(data: bytes) -> int:
    """CRC-64-AVRO exactly as the Avro specification writes it, to check fastavro's digest."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def single_object(schema: Any, record: dict[str, Any]) -> bytes:
    """What any producer following the spec sends, built without the codec."""
    canonical = to_parsing_canonical_form(schema).encode()
    buf = io.BytesIO()
    buf.write(b"\xc3\x01" + rabin_fingerprint(canonical).to_bytes(8, "little"))
    fastavro.schemaless_writer(buf, parse_schema(schema), record)
    return buf.getvalue()


# --- round trips and the header ---------------------------------------------------------------


def test_samples_cover_every_event_type() -> None:
    assert {type(e) for e in samples()} == set(EVENT_TYPES)


@pytest.mark.parametrize("event", samples(), ids=lambda e: type(e).__name__)
def test_round_trip(event: Event) -> None:
    data = encode(event)
    assert data[:10] == MARKER + fingerprint_of(type(event))
    assert decode(data, type(event)) == event
    assert decode(data, Event) == event  # `Event` accepts whichever type was written


def test_int_fingerprint_vector() -> None:
    assert rabin_fingerprint(b'"int"') == 0x7275D51A3F395C8F
    assert schema_fingerprint("int") == bytes.fromhex("8f5c393f1ad57572")
    assert single_object_header("int") == bytes.fromhex("c3018f5c393f1ad57572")


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.__name__)
def test_fingerprints_follow_the_spec(event_type: type[Event]) -> None:
    schema = current_schema(event_type.schema_name)
    canonical = to_parsing_canonical_form(schema).encode()
    assert fingerprint_of(event_type) == rabin_fingerprint(canonical).to_bytes(8, "little")


@pytest.mark.parametrize("event", samples(), ids=lambda e: type(e).__name__)
def test_decodes_what_a_foreign_producer_writes(event: Event) -> None:
    data = single_object(current_schema(event.schema_name), to_record(event))
    assert data == encode(event)
    assert decode(data, type(event)) == event


def test_known_schemas_hold_every_version_of_every_type() -> None:
    known = known_schemas()
    assert {k.event_type for k in known} == set(EVENT_TYPES)
    assert len({k.fingerprint for k in known}) == len(known)
    for event_type in EVENT_TYPES:
        assert fingerprint_of(event_type) in {k.fingerprint for k in known}
    assert all(k.version is not None for k in known)  # today every current file is in history


# --- errors -----------------------------------------------------------------------------------


def expect_error(data: bytes, expected: type[Event], match: str) -> DecodeError:
    with pytest.raises(DecodeError, match=match) as info:
        decode(data, expected)
    assert isinstance(info.value, ValueError)
    assert info.value.reason == str(info.value)
    return info.value


GOOD = encode(samples()[0])


@pytest.mark.parametrize("data", [b"", b"\xc3", GOOD[:9]])
def test_too_short(data: bytes) -> None:
    expect_error(data, JobRequested, "too short")


@pytest.mark.parametrize("marker", [b"\x00\x00", b"\xc3\x00", b"\x01\xc3", b'{"'])
def test_bad_marker(marker: bytes) -> None:
    expect_error(marker + GOOD[2:], JobRequested, "bad marker")


def test_unknown_fingerprint() -> None:
    flipped = GOOD[:2] + bytes([GOOD[2] ^ 0xFF]) + GOOD[3:]
    expect_error(flipped, JobRequested, "unknown writer schema fingerprint")
    # A schema nobody published: e.g. an app's own idea of the event.
    rogue = copy.deepcopy(current_schema("job_requested"))
    rogue["fields"].append({"name": "priority", "type": "int", "default": 0})
    data = single_object(rogue, {**to_record(samples()[0]), "priority": 1})
    expect_error(data, JobRequested, "unknown writer schema fingerprint")


def test_writer_schema_of_another_type() -> None:
    completed = encode(samples()[3])
    error = expect_error(completed, JobRequested, "expected JobRequested, got JobCompleted")
    assert "JobCompleted" in error.reason


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(lambda b: b[:-1], id="truncated"),
        pytest.param(lambda b: b[:12], id="cut-short"),
        pytest.param(lambda b: b + b"\x00", id="trailing-byte"),
        pytest.param(lambda b: b"\xff" * 20, id="garbage"),
        pytest.param(lambda b: b"\x03" + b[1:], id="negative-length"),
    ],
)
def test_corrupt_body(body: Any) -> None:
    expect_error(GOOD[:10] + body(GOOD[10:]), JobRequested, "corrupt or invalid JobRequested")


def test_invalid_utf8_is_corrupt() -> None:
    # event_id is the first field: a 2-byte string whose bytes are not UTF-8.
    expect_error(GOOD[:10] + b"\x04\xff\xfe" + GOOD[10 + 1 + 32 :], JobRequested, "corrupt")


def test_invalid_values_are_refused() -> None:
    record = {**to_record(samples()[0]), "attempt": 0}
    data = single_object(current_schema("job_requested"), record)
    expect_error(data, JobRequested, "1-based")


def test_encode_refuses_wrong_values() -> None:
    bad: Any = JobCompleted(**COMMON, job_type="x", result="{}")
    object.__setattr__(bad, "result", 42)  # what a type error in a caller would produce
    with pytest.raises((TypeError, ValueError)):
        encode(bad)


# --- data written with an older version --------------------------------------------------------


# A plausible earlier JobFailed: no `timeout_seconds`, no `http_status` in Failure and fewer
# failure kinds. The current schema can read it (fields added with defaults, symbols added).
def older_job_failed() -> dict[str, Any]:
    schema = copy.deepcopy(current_schema("job_failed"))
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "timeout_seconds"]
    failure = next(f for f in schema["fields"] if f["name"] == "failure")["type"]
    failure["fields"] = [f for f in failure["fields"] if f["name"] != "http_status"]
    failure["fields"][0]["type"]["symbols"] = ["unreachable", "timeout", "reported"]
    return schema


@pytest.fixture
def schemas_with_older_job_failed(tmp_path: Path) -> Path:
    shutil.copytree(schemas_dir(), tmp_path, dirs_exist_ok=True)
    history = tmp_path / "history" / "job_failed"
    (history / "v1.avsc").rename(history / "v2.avsc")
    (history / "v1.avsc").write_text(json.dumps(older_job_failed()))
    return tmp_path


def test_decodes_data_written_with_an_older_version(schemas_with_older_job_failed: Path) -> None:
    registry = SchemaRegistry(schemas_with_older_job_failed)
    old = older_job_failed()
    old_record = {
        **to_record(samples()[1]),
        "failure": {"kind": "reported", "message": "backend said no", "retryable": False},
    }
    del old_record["timeout_seconds"]
    data = single_object(old, old_record)
    assert data[2:10] != registry.current(JobFailed).fingerprint  # really another writer

    event = registry.decode(data, JobFailed)

    assert event.timeout_seconds is None  # added since: the reader's default
    assert event.failure == Failure(
        kind=FailureKind.REPORTED, message="backend said no", retryable=False, http_status=None
    )
    assert event.job_id == "job-1" and event.occurred_at == T0
    versions = {k.version for k in registry.known() if k.event_type is JobFailed}
    assert versions == {1, 2}


def test_the_default_registry_does_not_know_the_synthetic_version() -> None:
    data = single_object(
        older_job_failed(),
        {
            **to_record(samples()[1]),
            "failure": {"kind": "reported", "message": "m", "retryable": False},
        },
    )
    expect_error(data, JobFailed, "unknown writer schema fingerprint")


def test_default_registry_is_built_once() -> None:
    assert default_registry() is default_registry()
