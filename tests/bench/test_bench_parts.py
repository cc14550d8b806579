"""The benchmark's pure parts: statistics, figures, tables, JSON and profile reading.

No server is started; the benchmark's figures themselves are printed, never asserted.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

from bench import cleanup, figures, mail, profiling, report, stats


def test_percentile_interpolates_and_is_nan_when_empty() -> None:
    assert stats.percentile([1, 2, 3, 4], 50) == 2.5
    assert stats.percentile([5], 99) == 5
    assert stats.percentile([10, 20], 100) == 20
    assert math.isnan(stats.percentile([], 50))


def test_medians_take_each_figure_over_the_runs_that_have_it() -> None:
    runs = [{"a": 1.0, "b": 10.0}, {"a": 3.0}, {"a": 2.0, "b": math.nan}]
    assert stats.medians(runs) == {"a": 2.0, "b": 10.0}


def test_over_runs_takes_medians_but_the_extremes_where_asked() -> None:
    runs = [
        {"late min": 4.0, "late p99": 90.0, "late max": 140.0},
        {"late min": -1.0, "late p99": 60.0, "late max": 70.0},
        {"late min": 9.0, "late p99": 120.0, "late max": math.nan},
    ]
    got = stats.over_runs(runs, lowest=["late min"], highest=["late max", "absent"])
    # one early retry in any run shows: the minimum, not the median (4.0)
    assert got == {"late min": -1.0, "late p99": 90.0, "late max": 140.0}


def test_ratio_of_nothing_is_nan() -> None:
    assert stats.ratio(6, 3) == 2
    assert math.isnan(stats.ratio(1, 0))
    assert math.isnan(stats.ratio(math.nan, 1))


def test_outcome_runs_from_first_submit_to_last_mail() -> None:
    submits = [("a", 100.0, 100.1, 202), ("b", 100.5, 100.7, 202), ("", 101.0, 101.2, 503)]
    received = {"a": 101.0, "b": 102.0}
    result = figures.outcome_figures(submits, received)
    assert result["jobs/s end to end"] == 2 / 2.0
    assert result["rejected submits"] == 1
    assert result["e-mails missing"] == 0
    assert math.isclose(result["submit→e-mail p50 ms"], 1250.0)
    assert math.isclose(result["accept p99 ms"], 199.0, rel_tol=1e-6)


def test_a_missing_mail_is_counted_and_left_out_of_the_rate() -> None:
    submits = [("a", 0.0, 0.1, 202), ("b", 0.0, 0.1, 202)]
    result = figures.outcome_figures(submits, {"a": 4.0})
    assert result["e-mails missing"] == 1
    assert result["jobs/s end to end"] == 0.25


def test_cost_per_job_sums_the_platform_everything_but_the_backend_and_all() -> None:
    result = figures.cost_figures(
        {"gateway": 1.0, "kafka": 0.5, "smtp": 0.2, "backend": 3.0},
        {"gateway": 2**20 * 50},
        client_cpu_seconds=0.3,
        client_peak_rss=2**20 * 10,
        jobs=100,
        platform=["gateway", "kafka"],
    )
    assert result["CPU ms/job platform"] == 15.0
    assert math.isclose(result["CPU ms/job all but backend"], 20.0)
    assert math.isclose(result["CPU ms/job all processes"], 50.0)
    assert result["CPU ms/job client"] == 3.0
    assert result["peak RSS MB gateway"] == 50
    assert result["peak RSS MB client"] == 10


def test_machine_share_is_every_process_cpu_at_the_submit_rate() -> None:
    run = {"CPU ms/job all processes": 20.0, "submits/s": 50.0}
    # 20 ms of CPU per job, 50 jobs a second: one core of two.
    assert figures.machine_share(run, cores=2) == 50.0
    assert figures.machine_share({**run, "submits/s": 100.0}, cores=4) == 50.0


def test_retry_lateness_is_measured_from_the_due_time_of_each_retry() -> None:
    calls = [
        {"job_id": "a", "attempt": 1, "at": 10.0},
        {"job_id": "a", "attempt": 2, "at": 12.05},
        {"job_id": "a", "attempt": 2, "at": 13.0},  # a second call of one attempt: not a retry
        {"job_id": "b", "attempt": 1, "at": 10.0},
        {"job_id": "b", "attempt": 2, "at": 11.5},
    ]
    result = figures.retry_figures(calls, {("a", 2): 12.0, ("b", 2): 11.2})
    assert result["retry lateness count"] == 2
    assert math.isclose(result["retry lateness min ms"], 50.0)
    assert math.isclose(result["retry lateness max ms"], 300.0)
    assert result["backend calls/job"] == 2.5


def test_retry_lateness_reads_the_due_time_a_call_carries() -> None:
    calls = [{"job_id": "a", "attempt": 2, "at": 5.0, "due_at": 5.25}]
    result = figures.retry_figures(calls, None)
    assert math.isclose(result["retry lateness p50 ms"], -250.0)  # early shows as negative


def test_side_by_side_table_has_medians_ratio_and_every_run() -> None:
    jobplane = [{"jobs/s end to end": 40.0}, {"jobs/s end to end": 60.0}]
    celery = [{"jobs/s end to end": 25.0}]
    lines = report.side_by_side(jobplane, celery)
    assert lines[0].split()[:3] == ["median", "of", "runs"]
    row = next(line for line in lines if line.startswith("jobs/s end to end"))
    assert row.split()[4:] == ["50", "25", "2", "40", "60", "25"]


def test_scenario_headlines_join_the_side_by_side_table() -> None:
    lines = report.side_by_side(
        [{"x": 1.0}], [{"x": 1.0}], {"jobplane": {"late p99": 40.0}, "celery": {"late p99": 4.0}}
    )
    assert lines[-1].split() == ["late", "p99", "40", "4", "10", "(1", "run)", "(1", "run)"]


def test_scenario_headlines_show_each_run_when_kept() -> None:
    lines = report.side_by_side(
        [{"x": 1.0}],
        [{"x": 1.0}],
        {"jobplane": {"late p99": 40.0}, "celery": {"late p99": 4.0}},
        {"jobplane": {"late p99": [30.0, 40.0, 90.0]}, "celery": {"late p99": [4.0, 3.0, 5.0]}},
    )
    assert lines[-1].split() == ["late", "p99", "40", "4", "10", "30", "40", "90", "4", "3", "5"]


def test_scenario_headlines_of_a_system_that_did_not_run_show_nothing() -> None:
    lines = report.side_by_side(
        [{"x": 1.0}], [], {"jobplane": {"late p99": 40.0}}, {"jobplane": {"late p99": [40.0]}}
    )
    assert lines[-1].split() == ["late", "p99", "40", "-", "-", "40", "-"]


def test_scenarios_table_has_a_row_per_scenario() -> None:
    lines = report.scenarios({"x": {"jobs/s end to end": 1.5}, "y": {"retry lateness p99 ms": 3}})
    assert lines[0].split() == ["scenario", "jobs/s", "late", "p99"]
    assert lines[2].split() == ["x", "1.50", "-"]
    assert lines[3].split() == ["y", "-", "3"]


def test_json_document_has_no_nan(tmp_path: Path) -> None:
    doc = report.document(
        {"command": "python -m bench"},
        {"jobplane": [{"a": 1.0}, {"a": math.nan}]},
        {"jobplane": {"h": 2.0}},
        {"s": {"b": math.nan}},
        {"SMTP sends": 300.0},
        {},
    )
    path = tmp_path / "r.json"
    report.write_json(path, doc)
    loaded = json.loads(path.read_text())
    assert loaded["main"]["jobplane"]["median"] == {"a": 1.0}
    assert loaded["scenarios"]["s"]["b"] is None


def test_hot_spots_from_collapsed_stacks() -> None:
    collapsed = "\n".join(
        [
            "main (/x/site-packages/uvicorn/main.py:1);handle (/r/services/gateway/src/"
            "jobplane_gateway/api/jobs.py:40);dumps (/usr/lib/python3.11/json/__init__.py:231) 30",
            "main (/x/site-packages/uvicorn/main.py:1);handle (/r/services/gateway/src/"
            "jobplane_gateway/api/jobs.py:41);encode (/x/site-packages/fastavro/write.py:9) 10",
            "garbage line",
        ]
    )
    spots = profiling.hot_spots(collapsed, top=5)
    assert spots.samples == 40
    assert spots.self_time[0] == ("dumps (json/__init__.py)", 30)
    assert spots.inclusive == [("handle (jobplane_gateway/api/jobs.py)", 40)]


def test_the_retry_services_own_lateness_is_read_from_its_log() -> None:
    log = "\n".join(
        [
            '{"msg":"consuming","group_id":"g"}',
            '{"msg":"retry requested","attempt":2,"late_ms":12}',
            'not json at all, but says "retry requested"',
            '{"msg":"retry requested","attempt":3,"late_ms":40}',
        ]
    )
    assert figures.released_late_ms(log) == [12.0, 40.0]


def _deliver(directory: Path, name: str, message: EmailMessage, to: str) -> None:
    """A mail as the SMTP sink stores it: the raw message and its envelope beside it."""
    (directory / f"{name}.eml").write_bytes(message.as_bytes())
    envelope = {"mail_from": "jobplane@localhost", "rcpt_tos": [to],
                "received_at": "2026-11-24T06:09:47.530713+00:00"}  # fmt: skip
    (directory / f"{name}.json").write_text(json.dumps(envelope))


def test_mail_watcher_reads_the_job_from_the_header_or_else_the_body(tmp_path: Path) -> None:
    to = "user@bench.example.com"
    by_header = EmailMessage()
    by_header["To"] = to
    by_header["X-Jobplane-Job-Id"] = "job-a"
    by_header.set_content("Hello,\n\nJob ID: job-a\n", cte="base64")  # as the notifier's
    assert b"Job ID" not in by_header.as_bytes()
    by_body = EmailMessage()
    by_body["To"] = to
    by_body.set_content("Hello,\n\nJob ID: job-b\n", cte="base64")
    other = EmailMessage()
    other["To"] = "someone-else@example.com"
    other["X-Jobplane-Job-Id"] = "job-c"
    other.set_content("Job ID: job-c\n")
    _deliver(tmp_path, "1", by_header, to)
    _deliver(tmp_path, "2", by_body, to)
    _deliver(tmp_path, "3", other, "someone-else@example.com")

    watcher = mail.MailWatcher(tmp_path, to)
    watcher.poll()

    assert set(watcher.received) == {"job-a", "job-b"}
    assert watcher.received["job-a"] == datetime(2026, 11, 24, 6, 9, 47, 530713, UTC).timestamp()
    assert watcher.unmatched == 0


def test_mail_set_aside_leaves_an_empty_mailbox_and_deletes_nothing(tmp_path: Path) -> None:
    mailbox, aside = tmp_path / "mail", tmp_path / "aside"
    mailbox.mkdir()
    (mailbox / "1.eml").write_bytes(b"earlier run")
    mail.set_aside(mailbox, aside)
    assert mailbox.is_dir() and not any(mailbox.iterdir())
    assert [p.read_bytes() for p in aside.glob("*/1.eml")] == [b"earlier run"]
    mail.set_aside(mailbox, aside)  # an empty mailbox, again: no error


def test_clean_up_runs_every_deferred_deletion_even_after_one_fails(tmp_path: Path) -> None:
    logged: list[str] = []
    deferred = cleanup.Cleanup(tmp_path / "aside", logged.append)
    done: list[str] = []

    def fails() -> None:
        raise OSError("gone already")

    deferred.later(fails)
    deferred.later(lambda: done.append("topics"))
    deferred.mail_set_aside.mkdir()
    assert done == []  # nothing before the end
    deferred.run()
    assert done == ["topics"]
    assert len(logged) == 1 and "gone already" in logged[0]
    assert not deferred.mail_set_aside.exists()
    deferred.run()  # each deletion runs once
    assert done == ["topics"]
