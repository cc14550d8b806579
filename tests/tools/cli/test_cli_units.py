"""The CLI's pure parts: batching of a redrive, the request it sends, event lines."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from jobplane import codec
from jobplane.events import JobDead
from jobplane_cli.main import app
from jobplane_cli.redrive import Selection, batch_size, batches
from jobplane_cli.tail import decode_record
from typer.testing import CliRunner


def test_a_batch_is_one_seconds_worth_of_the_rate() -> None:
    assert batch_size(20) == 20
    assert batch_size(0.5) == 1
    assert batch_size(5000) == 1000
    assert batches(["a", "b", "c", "d", "e"], 2) == [["a", "b"], ["c", "d"], ["e"]]
    assert batches([], 3) == []


def test_a_selection_is_the_apis_redrive_request() -> None:
    since = datetime(2026, 11, 23, tzinfo=UTC)
    body = Selection(app_id="photos", failure_kind="timeout", since=since).request(dry_run=True)
    assert body == {
        "job_ids": None,
        "app_id": "photos",
        "failure_kind": "timeout",
        "since": "2026-11-23T00:00:00+00:00",
        "until": None,
        "dry_run": True,
    }


def test_an_event_is_printed_as_one_json_line_and_garbage_says_why() -> None:
    dead = JobDead(
        job_id="j1", app_id="a", user_id="u", attempt=6, trace_id="t1", job_type="t", reason="gone"
    )
    line = decode_record("job.dead", 0, 7, b"j1", codec.encode(dead))
    printed = json.loads(line.as_json())
    assert printed["type"] == "JobDead"
    assert printed["event"]["job_id"] == "j1"
    assert (printed["topic"], printed["partition"], printed["offset"]) == ("job.dead", 0, 7)
    broken = json.loads(decode_record("job.dead", 0, 8, None, b"junk").as_json())
    assert "too short" in broken["error"]


def test_without_a_key_the_cli_says_which_to_set() -> None:
    result = CliRunner().invoke(
        app, ["--url", "http://127.0.0.1:9", "apps"], env={"JOBPLANE_ADMIN_KEY": ""}
    )
    assert result.exit_code == 2
    assert "JOBPLANE_ADMIN_KEY" in result.output


def test_redrive_needs_ids_or_a_filter() -> None:
    result = CliRunner().invoke(app, ["--admin-key", "k", "dead", "redrive"])
    assert result.exit_code == 2
    assert "give job ids, or a filter" in result.output
