"""The checks of a fault scenario, from what the store, the backend and the SMTP sink hold
once the run settled: what was lost, stuck, mailed twice or not at all, retried early, and
how long the platform took to recover.

- lost: acknowledged (202) but the store has no such job, or it never left its first
  `queued` state and the backend never saw it (stored, never announced);
- stuck: started, but not finished (succeeded / dead) by the bound;
- duplicate e-mails: a message whose Message-ID, or whose (job, outcome, recipient), was
  already received; except one: when the notifier is killed, a mail the SMTP server stored
  just before (within SEND_WINDOW of the kill) may not have its "sent" recorded yet, and is
  sent again, with the same Message-ID, once its claim goes stale. No SMTP client can avoid
  that window (the server's answer and our record of it are two steps); such copies are
  counted apart, as `redelivered`, and the receiving side can drop them by Message-ID;
- missing e-mails: an outcome mail owed by a finished job (succeeded → the user; dead → the
  user; the app's and the platform's administrators get an "alert") that never arrived;
- early retries: attempt n+1 received by the backend before attempt n's recorded failure
  time + the configured delay of retry n (jitter only ever adds);
- recovery: from the end of the fault to the first job finished after it (the first e-mail
  received, for an SMTP outage).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from jobplane_local.mailbox import ReceivedMail, read_mail

from tests.fault.backend import Receipt
from tests.fault.workload import Acknowledged

FINISHED = ("succeeded", "dead")
# The outcome (X-Jobplane-Outcome) of the administrators' mail about a dead job.
ADMIN_ALERT = "alert"


class MailReader:
    """The SMTP sink's mailbox, each message parsed once however often it is read."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._read: dict[Path, ReceivedMail] = {}

    def mails(self) -> list[ReceivedMail]:
        if self.directory.is_dir():
            for envelope in sorted(self.directory.glob("*.json")):
                if envelope not in self._read and not envelope.name.startswith("."):
                    try:
                        self._read[envelope] = read_mail(envelope)
                    except (OSError, ValueError):
                        continue  # still being written: read it next time
        return list(self._read.values())


@dataclass(frozen=True)
class MailKey:
    job_id: str
    outcome: str
    recipient: str


def mail_keys(mail: ReceivedMail) -> list[MailKey]:
    job_id = str(mail.message.get("X-Jobplane-Job-Id", ""))
    outcome = str(mail.message.get("X-Jobplane-Outcome", ""))
    return [MailKey(job_id, outcome, rcpt.lower()) for rcpt in mail.rcpt_tos]


def expected_mails(
    doc: dict[str, Any], user_emails: dict[str, str], admin_emails: list[str]
) -> set[MailKey]:
    status = doc.get("status")
    if status not in FINISHED:
        return set()
    owed = {MailKey(doc["_id"], str(status), user_emails[doc["user_id"]].lower())}
    if status == "dead":
        owed |= {MailKey(doc["_id"], ADMIN_ALERT, admin.lower()) for admin in admin_emails}
    return owed


def as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def failure_time(attempt: dict[str, Any]) -> datetime | None:
    """When an attempt's failure was recorded: the earliest of its end and its report."""
    times = [attempt.get("ended_at"), (attempt.get("report") or {}).get("at")]
    known = [as_utc(t) for t in times if isinstance(t, datetime)]
    return min(known) if known else None


def finish_time(doc: dict[str, Any]) -> datetime | None:
    for name in ("finished_at", "updated_at"):
        value = doc.get(name)
        if isinstance(value, datetime):
            return as_utc(value)
    return None


# How close to the notifier's kill the first copy of a redelivered mail must have arrived.
SEND_WINDOW = timedelta(seconds=1)


@dataclass
class Outcome:
    """One scenario's result: the row of the table, and details to explain a failure."""

    scenario: str
    jobs: int
    lost: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    redelivered: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    early: list[str] = field(default_factory=list)
    wrong_outcome: list[str] = field(default_factory=list)
    recovery_seconds: float | None = None
    seconds: float = 0.0
    not_acknowledged: int = 0
    mails: int = 0

    @property
    def ok(self) -> bool:
        return not (self.lost or self.stuck or self.duplicates or self.missing or self.early)

    def row(self) -> str:
        recovery = f"{self.recovery_seconds:.1f}" if self.recovery_seconds is not None else "-"
        return (
            f"{self.scenario:<18} {self.jobs:>5} {len(self.lost):>5} {len(self.stuck):>6}"
            f" {len(self.duplicates):>6} {len(self.redelivered):>7} {len(self.missing):>8}"
            f" {len(self.early):>6}"
            f" {recovery:>9} {len(self.wrong_outcome):>8} {self.not_acknowledged:>7}"
            f" {self.mails:>6} {self.seconds:>7.0f}"
        )

    def details(self, limit: int = 5) -> str:
        lines = []
        for name in ("lost", "stuck", "duplicates", "missing", "early", "wrong_outcome"):
            # (redelivered copies are no failure; they are counted in the row)
            items: list[str] = getattr(self, name)
            if items:
                shown = "; ".join(items[:limit])
                more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
                lines.append(f"  {name}: {shown}{more}")
        return "\n".join(lines)


HEADER = (
    f"{'scenario':<18} {'jobs':>5} {'lost':>5} {'stuck':>6} {'dupl.':>6} {'redeliv':>7}"
    f" {'missing':>8}"
    f" {'early':>6} {'recov.(s)':>9} {'outcome≠':>8} {'unacked':>7} {'mails':>6} {'time(s)':>7}"
)


def check(
    scenario: str,
    acknowledged: dict[str, Acknowledged],
    docs: dict[str, dict[str, Any]],
    receipts: list[Receipt],
    mails: list[ReceivedMail],
    *,
    user_emails: dict[str, str],
    admin_emails: list[str],
    retry_delays: list[float],
    fault_end: datetime,
    recover_by_mail: bool,
    notifier_killed_at: datetime | None = None,
) -> Outcome:
    outcome = Outcome(scenario, len(acknowledged), mails=len(mails))
    received: dict[tuple[str, int], datetime] = {}
    for receipt in receipts:
        key = (receipt.job_id, receipt.attempt)
        received[key] = min(received.get(key, receipt.at), receipt.at)

    owed: set[MailKey] = set()
    for job_id, ack in acknowledged.items():
        doc = docs.get(job_id)
        if doc is None:
            outcome.lost.append(f"{job_id}: acknowledged, not in the store")
            continue
        status = doc.get("status")
        if status not in FINISHED:
            if status == "queued" and doc.get("attempt", 1) == 1 and (job_id, 1) not in received:
                outcome.lost.append(f"{job_id}: stored, never announced (queued)")
            else:
                outcome.stuck.append(f"{job_id}: {status} at attempt {doc.get('attempt')}")
            continue
        if status != ack.spec.expected_status:
            outcome.wrong_outcome.append(f"{job_id}: {ack.spec.mode} job ended {status}")
        owed |= expected_mails(doc, user_emails, admin_emails)
        outcome.early += early_retries(job_id, doc, received, retry_delays)

    first_copy: dict[str, ReceivedMail] = {}
    seen_keys: Counter[MailKey] = Counter()
    for mail in sorted(mails, key=lambda m: m.received_at or datetime.min.replace(tzinfo=UTC)):
        message_id = str(mail.message.get("Message-ID", ""))
        keys = mail_keys(mail)
        first = first_copy.get(message_id)
        if first is not None and _in_send_window(first, notifier_killed_at):
            outcome.redelivered.append(f"{message_id} to {mail.rcpt_tos} ({mail.path.name})")
        elif first is not None or any(seen_keys[k] for k in keys):
            outcome.duplicates.append(f"{message_id} to {mail.rcpt_tos} ({mail.path.name})")
        first_copy.setdefault(message_id, mail)
        seen_keys.update(keys)
    outcome.missing = sorted(
        f"{k.job_id} {k.outcome} → {k.recipient}" for k in owed if not seen_keys[k]
    )

    outcome.recovery_seconds = recovery(docs, mails, fault_end, by_mail=recover_by_mail)
    return outcome


def _in_send_window(first: ReceivedMail, notifier_killed_at: datetime | None) -> bool:
    """Whether the first copy reached the SMTP server as the notifier was killed."""
    if notifier_killed_at is None or first.received_at is None:
        return False
    return abs(first.received_at - notifier_killed_at) <= SEND_WINDOW


def early_retries(
    job_id: str,
    doc: dict[str, Any],
    received: dict[tuple[str, int], datetime],
    retry_delays: list[float],
) -> list[str]:
    early = []
    attempts: dict[str, dict[str, Any]] = doc.get("attempts") or {}
    for number_text, attempt in attempts.items():
        number = int(number_text)
        arrived = received.get((job_id, number + 1))
        failed = failure_time(attempt)
        if arrived is None or failed is None or number > len(retry_delays):
            continue
        due = failed.timestamp() + retry_delays[number - 1]
        if arrived.timestamp() < due:
            early.append(
                f"{job_id}: attempt {number + 1} arrived {due - arrived.timestamp():.2f}s"
                f" before it was due"
            )
    return early


def recovery(
    docs: dict[str, dict[str, Any]],
    mails: list[ReceivedMail],
    fault_end: datetime,
    *,
    by_mail: bool,
) -> float | None:
    if by_mail:
        moments = [as_utc(m.received_at) for m in mails if m.received_at]
    else:
        moments = [
            t
            for doc in docs.values()
            if doc.get("status") in FINISHED and (t := finish_time(doc)) is not None
        ]
    after = [m for m in moments if m >= fault_end]
    return (min(after) - fault_end).total_seconds() if after else None
