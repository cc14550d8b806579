"""The fault checks' own rules, on hand-made mails (no servers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

from jobplane_local.mailbox import ReceivedMail

from tests.fault.checks import check

KILLED_AT = datetime(2026, 11, 23, 20, 16, 42, tzinfo=UTC)


def mail(message_id: str, at: datetime, name: str) -> ReceivedMail:
    message = EmailMessage()
    message["Message-ID"] = message_id
    message["X-Jobplane-Job-Id"] = message_id.strip("<>")
    message["X-Jobplane-Outcome"] = "succeeded"
    return ReceivedMail("jobplane@x", ["user@x"], message, Path(name), received_at=at)


def outcome_of(mails: list[ReceivedMail], notifier_killed_at: datetime | None) -> tuple[int, int]:
    outcome = check(
        "kill-notifier",
        {},
        {},
        [],
        mails,
        user_emails={},
        admin_emails=[],
        retry_delays=[],
        fault_end=KILLED_AT,
        recover_by_mail=True,
        notifier_killed_at=notifier_killed_at,
    )
    return len(outcome.duplicates), len(outcome.redelivered)


def test_a_mail_stored_as_the_notifier_died_may_come_again_with_its_message_id() -> None:
    first = mail("<a>", KILLED_AT - timedelta(milliseconds=40), "1.eml")
    again = mail("<a>", KILLED_AT + timedelta(seconds=20), "2.eml")

    assert outcome_of([first, again], KILLED_AT) == (0, 1)


def test_any_other_second_copy_is_a_duplicate() -> None:
    long_before = mail("<b>", KILLED_AT - timedelta(seconds=5), "1.eml")
    again = mail("<b>", KILLED_AT + timedelta(seconds=20), "2.eml")
    near = mail("<c>", KILLED_AT, "3.eml")
    near_again = mail("<c>", KILLED_AT + timedelta(seconds=20), "4.eml")

    assert outcome_of([long_before, again], KILLED_AT) == (1, 0)
    assert outcome_of([near, near_again], None) == (1, 0)  # no notifier was killed
