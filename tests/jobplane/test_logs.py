"""JSON log lines and the repeat filter of error logs: pure unit tests, no servers."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jobplane.logs import JsonFormatter, RepeatFilter, bind, fields


def record(
    at: float, msg: str = "handling failed", level: int = logging.WARNING, **extra: Any
) -> logging.LogRecord:
    line = logging.LogRecord("jobplane.kafka", level, __file__, 1, msg, None, None)
    line.created = at
    line.fields = fields(**extra)["fields"]
    return line


def extra(line: logging.LogRecord) -> dict[str, Any]:
    found: dict[str, Any] = getattr(line, "fields", {})
    return found


def passed(flt: RepeatFilter, *records: logging.LogRecord) -> list[logging.LogRecord]:
    return [r for r in records if flt.filter(r)]


def test_an_outage_writes_one_line_per_cause_per_interval_with_the_count() -> None:
    flt = RepeatFilter(interval_s=10)
    # 5 causes failing 100 times a second for 31 s, as during a Kafka outage.
    lines = [record(t / 100, cause=f"kafka:_TRANSPORT{t % 5}") for t in range(31 * 100)]
    out = passed(flt, *lines)
    assert len(out) == 5 * 4  # at 0 s, 10 s, 20 s, 30 s for each cause
    later = [r for r in out if r.created >= 10]
    assert all(extra(r)["repeats_suppressed"] > 0 for r in later)
    total = len(out) + sum(extra(r).get("repeats_suppressed", 0) for r in out)
    assert total <= len(lines)


def test_the_recovery_is_told_once_with_the_outage() -> None:
    flt = RepeatFilter(interval_s=10)
    assert passed(flt, record(100.0, cause="pymongo.errors.AutoReconnect"))
    assert not passed(flt, record(101.0, cause="pymongo.errors.AutoReconnect"))
    back = [
        record(105.0 + i, "works again", logging.INFO, recovered="pymongo.errors.AutoReconnect")
        for i in range(3)
    ]
    (told,) = passed(flt, *back)
    assert extra(told)["outage_s"] == 5.0
    assert extra(told)["repeats_suppressed"] == 1
    # A new outage of the same cause is logged at once again.
    assert passed(flt, record(106.0, cause="pymongo.errors.AutoReconnect"))


def test_lines_without_a_cause_are_keyed_by_their_message_and_info_always_passes() -> None:
    flt = RepeatFilter(interval_s=10)
    out = passed(
        flt,
        record(0.0, "publish failed"),
        record(1.0, "publish failed"),
        record(1.0, "cannot commit"),
        record(2.0, "published", logging.INFO),
        record(2.0, "published", logging.INFO),
    )
    assert [r.msg for r in out] == ["publish failed", "cannot commit", "published", "published"]


def test_librdkafka_errors_go_through_the_filter() -> None:
    """The client's error callback logs with a cause per error code: a flood of the same
    error from librdkafka's threads comes out as one line per interval."""
    import confluent_kafka
    from jobplane.kafka_client import client_callbacks

    flt = RepeatFilter(interval_s=10)
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, line: logging.LogRecord) -> None:
            seen.append(line)

    handler = Keep()
    handler.addFilter(flt)
    client_log = logging.getLogger("jobplane.kafka.client")
    client_log.addHandler(handler)
    try:
        error_cb = client_callbacks("test")["error_cb"]
        for _ in range(50):
            error_cb(confluent_kafka.KafkaError(confluent_kafka.KafkaError._TRANSPORT, "down"))
    finally:
        client_log.removeHandler(handler)
    assert len(seen) == 1
    assert extra(seen[0])["cause"] == "kafka:_TRANSPORT"


def formatted(line: logging.LogRecord) -> dict[str, Any]:
    text = JsonFormatter("gateway").format(line)
    assert "\n" not in text
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def test_a_line_is_one_compact_json_object_with_its_context_and_fields() -> None:
    with bind(trace_id="t-1", job_id="j-1"):
        text = JsonFormatter("gateway").format(
            record(1_700_000_000.0, "job accepted", logging.INFO, attempt=2, app_id="photos")
        )
    assert text.startswith('{"ts":"2023-11-14T22:13:20.000+00:00","level":"info",')
    assert json.loads(text) == {
        "ts": "2023-11-14T22:13:20.000+00:00",
        "level": "info",
        "service": "gateway",
        "logger": "jobplane.kafka",
        "msg": "job accepted",
        "trace_id": "t-1",
        "job_id": "j-1",
        "attempt": 2,
        "app_id": "photos",
    }


def test_values_json_has_no_form_for_are_written_as_text_as_before() -> None:
    due = datetime(2026, 12, 6, 5, 0, tzinfo=UTC)
    line = formatted(record(0.0, "due", logging.INFO, due=due, path=Path("/x")))
    assert line["due"] == str(due)  # "2026-12-06 05:00:00+00:00", not orjson's own form
    assert line["path"] == "/x"


def test_what_orjson_refuses_is_still_written() -> None:
    huge = 2**70
    line = formatted(record(0.0, "odd", logging.INFO, huge=huge, text="lone \ud800 surrogate"))
    assert line["huge"] == huge
    assert line["text"] == "lone \ud800 surrogate"


def test_an_exception_travels_in_the_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        line = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    parsed = formatted(line)
    assert parsed["level"] == "error"
    assert "ValueError: boom" in parsed["exc"]
