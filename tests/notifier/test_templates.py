"""The e-mails' words: languages, escaping, the admin alert's attempt list. Pure, no servers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from jobplane.events import AttemptRecord, Failure, FailureKind, JobCompleted, JobDead
from jobplane_notifier.mailer import domain_of, message_id
from jobplane_notifier.notify import notification_key, unique_addresses
from jobplane_notifier.templates import (
    MailKind,
    alert_context,
    failure_context,
    language_of,
    render,
    success_context,
)

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script> & <b>bold</b>'


def completed(result: object = None, job_type: str = "thumbnail") -> JobCompleted:
    return JobCompleted(
        job_id="job-1",
        app_id="photos",
        user_id="u1",
        attempt=1,
        trace_id="trace-1",
        job_type=job_type,
        result=json.dumps(result if result is not None else {"thumbnails": 3}),
    )


def dead(attempts: int = 6, message: str = "HTTP 503 from backend") -> JobDead:
    records = tuple(
        AttemptRecord(
            attempt=n,
            dispatched_at=T0 + timedelta(minutes=n),
            ended_at=T0 + timedelta(minutes=n, seconds=5),
            failure=Failure(
                kind=FailureKind.HTTP_STATUS,
                message=f"{message} (try {n})",
                retryable=True,
                http_status=503,
            ),
        )
        for n in range(1, attempts + 1)
    )
    return JobDead(
        job_id="job-2",
        app_id="photos",
        user_id="u1",
        attempt=max(attempts, 1),
        trace_id="trace-2",
        job_type="face-analysis",
        reason=f"failed {attempts} attempts; last error: {message}",
        failure=records[-1].failure if records else None,
        attempts=records,
    )


@pytest.mark.parametrize(
    ("preference", "expected"),
    [
        ("en", "en"),
        ("ja", "ja"),
        ("ja-JP", "ja"),
        ("JA", "ja"),
        ("fr", "en"),
        (None, "en"),
        ("", "en"),
    ],
)
def test_language_fallback(preference: str | None, expected: str) -> None:
    assert language_of(preference) == expected


def test_success_mail_in_english() -> None:
    subject, text, html = render(MailKind.USER_SUCCESS, "en", success_context(completed()))
    assert subject == 'Your job "thumbnail" has finished'
    assert "job-1" in text and "finished successfully" in text
    assert '"thumbnails": 3' in text
    assert "<html" in html and "job-1" in html


def test_success_mail_in_japanese() -> None:
    subject, text, html = render(MailKind.USER_SUCCESS, "ja", success_context(completed()))
    assert subject == "ジョブ「thumbnail」が完了しました"
    assert "正常に完了しました" in text
    assert 'lang="ja"' in html and "正常に完了しました" in html


def test_unknown_language_falls_back_to_english() -> None:
    subject, _, _ = render(MailKind.USER_SUCCESS, "de", success_context(completed()))
    assert subject.startswith("Your job")


def test_failure_mail_en_and_ja() -> None:
    context = failure_context(dead())
    subject, text, _ = render(MailKind.USER_FAILURE, "en", context)
    assert "could not be completed" in subject
    assert "after 6 attempts" in text
    assert "HTTP 503 from backend" in text
    subject, text, html = render(MailKind.USER_FAILURE, "ja", context)
    assert subject == "ジョブ「face-analysis」を完了できませんでした"
    assert "6回試行しましたが" in text
    assert "完了できませんでした" in html


def test_status_link() -> None:
    ctx = success_context(completed(), "https://status.example/jobs/")
    _, text, html = render(MailKind.USER_SUCCESS, "en", ctx)
    assert "https://status.example/jobs/job-1" in text
    assert 'href="https://status.example/jobs/job-1"' in html
    ctx = success_context(completed(), "https://status.example/?job={job_id}")
    assert ctx["status_url"] == "https://status.example/?job=job-1"
    assert success_context(completed())["status_url"] is None


def test_hostile_text_is_escaped_in_html_and_kept_in_text() -> None:
    event = completed(result={"note": HOSTILE}, job_type="<img src=x onerror=alert(1)>")
    subject, text, html = render(MailKind.USER_SUCCESS, "en", success_context(event))
    assert "<script>" not in html and "<img" not in html and "<b>bold" not in html
    assert "&lt;script&gt;" in html and "&lt;img src=x" in html
    # The plain-text part shows the text as it is (it is not HTML); the subject has one line.
    assert "<img src=x onerror=alert(1)>" in subject
    assert "\n" not in subject
    assert '<script>alert(\\"x\\")</script>' in text


def test_hostile_failure_message_is_escaped_in_user_and_admin_html() -> None:
    event = dead(message=HOSTILE)
    _, _, html = render(MailKind.USER_FAILURE, "ja", failure_context(event))
    assert "<script>" not in html and "&lt;script&gt;" in html
    _, _, html = render(MailKind.ADMIN_ALERT, "en", alert_context(event))
    assert "<script>" not in html and "<b>bold" not in html and "&lt;script&gt;" in html


def test_subject_newlines_cannot_inject_headers() -> None:
    subject, _, _ = render(
        MailKind.USER_SUCCESS, "en", success_context(completed(job_type="a\r\nBcc: x@y"))
    )
    assert "\n" not in subject and "\r" not in subject


def test_admin_alert_lists_every_attempt_and_the_identifiers() -> None:
    event = dead(attempts=6)
    subject, text, html = render(MailKind.ADMIN_ALERT, "en", alert_context(event))
    assert subject == "[Jobplane] Job job-2 of photos is dead"
    for part in (text, html):
        for value in ("photos", "u1", "job-2", "face-analysis", "trace-2", event.reason):
            assert value in part
        for n in range(1, 7):
            assert f"HTTP 503 from backend (try {n})" in part
        assert "http_status" in part
        assert "2025-03-01 12:01:00 UTC" in part  # dispatched at, attempt 1
        assert "2025-03-01 12:06:05 UTC" in part  # ended at, attempt 6
    assert "Attempts (6)" in text
    assert text.count("#") == 6
    assert html.count("<tr><td>") == 6


def test_admin_alert_with_no_history() -> None:
    event = dead(attempts=0)
    _, text, html = render(MailKind.ADMIN_ALERT, "ja", alert_context(event))  # admins: English
    assert "no attempt was recorded" in text and "no attempt was recorded" in html


def test_admin_alert_says_when_the_user_was_not_notified() -> None:
    ctx = alert_context(dead(), user_notified=False, user_problem="user 'u1' is not registered")
    _, text, _ = render(MailKind.ADMIN_ALERT, "en", ctx)
    assert "The user was NOT notified: user 'u1' is not registered" in text


def test_admin_alert_for_an_undecodable_event_names_the_source_topic() -> None:
    event = JobDead(
        job_id="",
        app_id="",
        user_id="",
        attempt=1,
        trace_id="trace-3",
        job_type="",
        reason="bad marker 0000, expected c301",
        failure=Failure(kind=FailureKind.UNDECODABLE, message="bad marker", retryable=False),
        source_topic="job.failed",
        raw_event=b"\x00\x00garbage",
    )
    subject, text, html = render(MailKind.ADMIN_ALERT, "en", alert_context(event))
    assert subject == "[Jobplane] Undecodable event on job.failed"
    for part in (text, html):
        assert "could not be decoded" in part
        assert "job.failed" in part
        assert "bad marker 0000, expected c301" in part
        assert "9 bytes" in part


def test_message_id_is_deterministic_per_job_outcome_recipient() -> None:
    a = message_id("job-1", "succeeded", "Alice@Example.com", "jobplane.test")
    assert a == message_id("job-1", "succeeded", "alice@example.com", "jobplane.test")
    assert a != message_id("job-1", "dead", "alice@example.com", "jobplane.test")
    assert a != message_id("job-1", "succeeded", "bob@example.com", "jobplane.test")
    assert a.startswith("<") and a.endswith("@jobplane.test>")
    assert domain_of("Jobplane <jobplane@localhost>") == "localhost"


def test_notification_keys_and_recipient_dedup() -> None:
    assert notification_key("j", "dead", "A@x.org") == "j:dead:a@x.org"
    assert unique_addresses(["a@x.org", " A@x.org", "", "b@x.org", "a@x.org"]) == [
        "a@x.org",
        "b@x.org",
    ]
