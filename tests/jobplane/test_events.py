"""Events as Python values and their conversion to and from fastavro records."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
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
    from_record,
    to_record,
)

T0 = datetime(2025, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
COMMON: dict[str, Any] = {
    "job_id": "job-1",
    "app_id": "app-1",
    "user_id": "user-1",
    "attempt": 2,
    "trace_id": "trace-1",
    "occurred_at": T0,
}
FAILURE = Failure(
    kind=FailureKind.HTTP_STATUS, message="503 from backend", retryable=True, http_status=503
)


def samples() -> list[Event]:
    return [
        JobRequested(**COMMON, job_type="encode", payload='{"v": 1}', timeout_seconds=30),
        JobFailed(**COMMON, job_type="encode", payload="{}", failure=FAILURE),
        JobRetryScheduled(
            **COMMON,
            job_type="encode",
            payload="{}",
            failure=FAILURE,
            retry_number=2,
            due_at=T0 + timedelta(seconds=40),
        ),
        JobCompleted(**COMMON, job_type="encode", result='{"ok": true}'),
        JobDead(
            **COMMON,
            job_type="encode",
            reason="retries exhausted",
            failure=FAILURE,
            attempts=(
                AttemptRecord(attempt=1, dispatched_at=T0, ended_at=T0, failure=FAILURE),
                AttemptRecord(attempt=2, dispatched_at=T0),
            ),
            source_topic="job.failed",
            raw_event=b"\x00\x01",
        ),
    ]


def test_samples_cover_every_event_type() -> None:
    assert {type(e) for e in samples()} == set(EVENT_TYPES)


@pytest.mark.parametrize("event", samples(), ids=lambda e: type(e).__name__)
def test_record_round_trip(event: Event) -> None:
    assert from_record(type(event), to_record(event)) == event


def test_to_record_maps_nested_values_to_plain_avro_data() -> None:
    dead = samples()[-1]
    record = to_record(dead)
    assert record["failure"] == {
        "kind": "http_status",
        "message": "503 from backend",
        "retryable": True,
        "http_status": 503,
    }
    assert type(record["failure"]["kind"]) is str  # not the enum member
    assert isinstance(record["attempts"], list)
    assert record["attempts"][1] == {
        "attempt": 2,
        "dispatched_at": T0,
        "ended_at": None,
        "failure": None,
    }
    assert record["occurred_at"] == T0


def test_from_record_builds_enums_and_nested_dataclasses() -> None:
    record = to_record(samples()[-1])
    dead = from_record(JobDead, record)
    assert dead.failure is not None
    assert dead.failure.kind is FailureKind.HTTP_STATUS
    assert isinstance(dead.attempts, tuple)
    assert dead.attempts[0].failure == FAILURE
    assert dead.attempts[1].failure is None


def test_from_record_normalises_datetimes_to_utc() -> None:
    record = to_record(samples()[0])
    record["occurred_at"] = T0.astimezone(timezone(timedelta(hours=9)))
    event = from_record(JobRequested, record)
    assert event.occurred_at == T0
    assert event.occurred_at.tzinfo is UTC


def test_missing_optional_fields_take_their_defaults() -> None:
    record = to_record(samples()[0])
    del record["timeout_seconds"]
    assert from_record(JobRequested, record).timeout_seconds is None


def test_missing_required_field_is_an_error() -> None:
    record = to_record(samples()[0])
    del record["payload"]
    with pytest.raises(TypeError):
        from_record(JobRequested, record)


def test_unknown_enum_symbol_is_an_error() -> None:
    record = to_record(samples()[1])
    record["failure"]["kind"] = "exploded"
    with pytest.raises(ValueError):
        from_record(JobFailed, record)


def test_defaults() -> None:
    before = datetime.now(UTC)
    a, b = (
        JobRequested(
            job_id="j", app_id="a", user_id="u", attempt=1, trace_id="t", job_type="x", payload="{}"
        )
        for _ in range(2)
    )
    assert len(a.event_id) == 32
    int(a.event_id, 16)  # hex
    assert a.event_id != b.event_id
    assert a.timeout_seconds is None
    assert a.occurred_at.tzinfo is UTC
    assert before - timedelta(milliseconds=1) <= a.occurred_at <= datetime.now(UTC)
    assert a.occurred_at.microsecond % 1000 == 0  # what the wire keeps, so round trips are exact
    dead = JobDead(
        job_id="j", app_id="a", user_id="u", attempt=1, trace_id="t", job_type="x", reason="r"
    )
    assert (dead.failure, dead.attempts, dead.source_topic, dead.raw_event) == (
        None,
        (),
        None,
        None,
    )


def test_failure_kind_values_match_the_wire_symbols() -> None:
    assert [k.value for k in FailureKind] == [
        "unreachable",
        "timeout",
        "http_status",
        "reported",
        "rejected",
        "undecodable",
    ]
    assert FailureKind("timeout") is FailureKind.TIMEOUT
    assert isinstance(FailureKind.TIMEOUT, str)
    assert f"{FailureKind.TIMEOUT}" == "timeout"  # usable as is in messages and documents


def test_events_are_frozen_and_keyword_only() -> None:
    event = samples()[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.attempt = 3  # type: ignore[misc]
    untyped: Any = JobCompleted  # mypy already refuses this call; check the runtime too
    positional: list[Any] = ["j", "a", "u", 1, "t", "x", "{}"]
    with pytest.raises(TypeError):
        untyped(*positional)


def test_attempt_is_one_based() -> None:
    with pytest.raises(ValueError, match="1-based"):
        JobCompleted(**{**COMMON, "attempt": 0}, job_type="x", result="{}")


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        JobCompleted(**{**COMMON, "occurred_at": datetime(2025, 1, 1)}, job_type="x", result="{}")
    with pytest.raises(ValueError, match="timezone-aware"):
        AttemptRecord(attempt=1, ended_at=datetime(2025, 1, 1))


def test_an_event_carries_its_envelope_on_to_the_next() -> None:
    requested = JobRequested(
        job_id="j1", app_id="a", user_id="u", attempt=2, trace_id="t", job_type="x", payload="{}"
    )
    failure = Failure(kind=FailureKind.TIMEOUT, message="slow", retryable=True)
    failed = JobFailed(**requested.envelope.fields(), payload="{}", failure=failure)
    assert failed.envelope == requested.envelope
    again = JobRequested(**failed.envelope.fields(attempt=3), payload="{}")
    assert (again.job_id, again.app_id, again.user_id, again.trace_id, again.job_type) == (
        "j1",
        "a",
        "u",
        "t",
        "x",
    )
    assert again.attempt == 3
