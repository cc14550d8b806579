"""The job as the store keeps it: its status, its attempts and its outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from jobplane.events import (
    AttemptRecord,
    Envelope,
    Event,
    Failure,
    FailureKind,
    JobCompleted,
    JobDead,
    JobFailed,
    JobRequested,
)


class JobStatus(StrEnum):
    QUEUED = "queued"  # accepted, waiting for its first dispatch
    DISPATCHED = "dispatched"  # the dispatcher is calling the app's backend
    RUNNING = "running"  # the backend accepted the attempt; its result comes by callback
    RETRY_SCHEDULED = "retry_scheduled"  # the attempt failed; the next one is due later
    SUCCEEDED = "succeeded"
    DEAD = "dead"  # retries exhausted or a permanent failure
    CANCELLED = "cancelled"  # cancelled by its app or an administrator: never runs again

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATUSES


FINISHED_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.DEAD, JobStatus.CANCELLED})
# A job that may be cancelled: one that has not finished.
CANCELLABLE_STATUSES = (
    JobStatus.QUEUED,
    JobStatus.RETRY_SCHEDULED,
    JobStatus.DISPATCHED,
    JobStatus.RUNNING,
)
# An attempt whose outcome may still be reported: a callback or a failure for it counts.
OPEN_STATUSES = (JobStatus.DISPATCHED, JobStatus.RUNNING)
# A job that may still be handed a failure report (a rejection can precede any dispatch).
FAILABLE_STATUSES = (JobStatus.QUEUED, JobStatus.DISPATCHED, JobStatus.RUNNING)


ReportStatus = Literal["succeeded", "failed"]
# The outcomes that end a job with an e-mail to its user (``mail.<outcome>`` on the job).
MAIL_OUTCOMES = ("succeeded", "dead")


@dataclass(frozen=True, slots=True)
class Report:
    """What is known of an attempt's outcome, as first reported (the first report wins)."""

    status: ReportStatus
    at: datetime
    failure: Failure | None = None  # set when status is "failed"

    def to_document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"status": self.status, "at": self.at}
        if self.failure is not None:
            doc["error"] = failure_to_document(self.failure)
        return doc

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Report:
        return cls(
            status=doc["status"], at=doc["at"], failure=failure_from_document(doc.get("error"))
        )


class OwedTopic(StrEnum):
    """Which topic a job's owed announcement goes to."""

    REQUESTED = "requested"
    COMPLETED = "completed"
    FAILED = "failed"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """The app's webhook about one outcome (``webhook.<outcome>`` on the job)."""

    state: str  # "claimed", "sent", "retrying" or "failed" (jobplane.store.WebhookState)
    attempts: int = 0
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    sent_at: datetime | None = None

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> WebhookDelivery:
        return cls(
            state=str(doc.get("state")),
            attempts=int(doc.get("attempts", 0)),
            last_error=doc.get("last_error"),
            next_attempt_at=doc.get("next_attempt_at"),
            sent_at=doc.get("sent_at"),
        )


@dataclass(frozen=True, slots=True)
class Attempt:
    number: int
    dispatched_at: datetime | None = None
    accepted_at: datetime | None = None
    ended_at: datetime | None = None
    deadline_at: datetime | None = None
    callback_token_hash: str | None = None
    failure: Failure | None = None
    report: Report | None = None

    def to_record(self) -> AttemptRecord:
        return AttemptRecord(
            attempt=self.number,
            dispatched_at=self.dispatched_at,
            ended_at=self.ended_at,
            failure=self.failure,
        )


@dataclass(frozen=True, slots=True)
class Redrive:
    """One redrive of a dead job: who, when, and what the run before it ended with."""

    at: datetime
    by: str  # "admin" or "app:<app_id>"
    from_attempt: int  # the attempt the job died at
    failure: Failure | None
    mail_states: dict[str, str]  # the earlier run's user mails, per outcome

    def to_document(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "by": self.by,
            "from_attempt": self.from_attempt,
            "failure": failure_to_document(self.failure) if self.failure else None,
            "mail_states": self.mail_states,
        }

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Redrive:
        return cls(
            at=doc["at"],
            by=str(doc.get("by", "")),
            from_attempt=int(doc["from_attempt"]),
            failure=failure_from_document(doc.get("failure")),
            mail_states=dict(doc.get("mail_states") or {}),
        )


@dataclass(frozen=True, slots=True)
class Cancellation:
    at: datetime
    by: str  # "admin" or "app:<app_id>"


@dataclass(frozen=True)
class Job:
    """A job; ``attempt`` is the current (or next due) attempt, 1-based."""

    job_id: str
    app_id: str
    user_id: str
    job_type: str
    payload: str
    timeout_seconds: int | None
    status: JobStatus
    attempt: int
    trace_id: str
    created_at: datetime
    updated_at: datetime
    attempts: list[Attempt] = field(default_factory=list)
    result: str | None = None
    deadline_at: datetime | None = None
    next_attempt_at: datetime | None = None
    last_failure: Failure | None = None
    notified_user_at: datetime | None = None
    notified_admins_at: datetime | None = None
    # The outbox: set when the job owes an event, cleared by the consumer that acts on it.
    announce_due_at: datetime | None = None
    idempotency_key: str | None = None
    announce_relays: int = 0  # how often the relay has re-published an owed event
    # ``mail.<outcome>.state`` per outcome mailed to the user ("claimed" or "sent").
    mail_states: dict[str, str] = field(default_factory=dict)
    # Attempt numbers only ever grow: a redriven job's new run starts at the attempt after
    # the one it died at, so no event of an earlier run can match the new run's attempts.
    # The retry allowance counts from ``run_start_attempt``.
    run_start_attempt: int = 1
    redrives: list[Redrive] = field(default_factory=list)
    cancelled: Cancellation | None = None
    # Set while the dispatcher holds the job because its app is disabled.
    held_at: datetime | None = None

    @property
    def run_attempt(self) -> int:
        """The current attempt counted from the start of the current run (1-based)."""
        return self.attempt - self.run_start_attempt + 1

    # The app's webhook per outcome delivered (or being delivered).
    webhooks: dict[str, WebhookDelivery] = field(default_factory=dict)

    @property
    def user_notified(self) -> bool:
        return self.notified_user_at is not None or "sent" in self.mail_states.values()

    # -- the events that report on a stored job: built here only ---------------------

    def envelope(self, trace_id: str | None = None) -> Envelope:
        """What every event about this job's current attempt carries."""
        return Envelope(
            job_id=self.job_id,
            app_id=self.app_id,
            user_id=self.user_id,
            attempt=self.attempt,
            trace_id=trace_id or self.trace_id,
            job_type=self.job_type,
        )

    def requested_event(self, trace_id: str | None = None) -> JobRequested:
        """The request of the job's current (or next due) attempt."""
        return JobRequested(
            **self.envelope(trace_id).fields(),
            payload=self.payload,
            timeout_seconds=self.timeout_seconds,
        )

    def dead_event(self, reason: str | None = None, trace_id: str | None = None) -> JobDead:
        """The announcement that the job is dead, with every attempt."""
        failure = self.last_failure
        return JobDead(
            **self.envelope(trace_id).fields(),
            reason=reason or (failure.message if failure else "the job is dead"),
            failure=failure,
            attempts=tuple(a.to_record() for a in self.attempts),
        )

    def owed_event(self) -> tuple[OwedTopic, Event] | None:
        """What the job's state owes Kafka (the outbox relay re-publishes it), or None."""
        if self.status in (JobStatus.QUEUED, JobStatus.RETRY_SCHEDULED):
            return OwedTopic.REQUESTED, self.requested_event()
        if self.status is JobStatus.SUCCEEDED:
            return OwedTopic.COMPLETED, self.completed_event()
        if self.status is JobStatus.DEAD:
            return OwedTopic.DEAD, self.dead_event()
        current = self.attempt_info(self.attempt)
        report = current.report if current else None
        if self.status in OPEN_STATUSES and report and report.failure:
            return OwedTopic.FAILED, self.failed_event(report.failure)
        return None

    def failed_event(self, failure: Failure, trace_id: str | None = None) -> JobFailed:
        """The report that the current attempt failed; it carries the request along."""
        return JobFailed(
            **self.envelope(trace_id).fields(),
            payload=self.payload,
            timeout_seconds=self.timeout_seconds,
            failure=failure,
        )

    def completed_event(self, trace_id: str | None = None) -> JobCompleted:
        """The announcement of a succeeded job's result."""
        return JobCompleted(
            **self.envelope(trace_id).fields(),
            result=self.result if self.result is not None else "null",
        )

    def attempt_info(self, number: int) -> Attempt | None:
        return next((a for a in self.attempts if a.number == number), None)

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Job:
        attempts = sorted(
            (_attempt_from_document(int(n), a) for n, a in doc.get("attempts", {}).items()),
            key=lambda a: a.number,
        )
        return cls(
            job_id=doc["_id"],
            app_id=doc["app_id"],
            user_id=doc["user_id"],
            job_type=doc["job_type"],
            payload=doc["payload"],
            timeout_seconds=doc.get("timeout_seconds"),
            status=JobStatus(doc["status"]),
            attempt=doc["attempt"],
            trace_id=doc.get("trace_id", ""),
            created_at=doc["created_at"],
            updated_at=doc["updated_at"],
            attempts=attempts,
            result=doc.get("result"),
            deadline_at=doc.get("deadline_at"),
            next_attempt_at=doc.get("next_attempt_at"),
            last_failure=failure_from_document(doc.get("last_failure")),
            notified_user_at=doc.get("notified_user_at"),
            notified_admins_at=doc.get("notified_admins_at"),
            announce_due_at=doc.get("announce_due_at"),
            idempotency_key=doc.get("idempotency_key"),
            announce_relays=doc.get("announce_relays", 0),
            mail_states={
                outcome: str(state.get("state"))
                for outcome, state in (doc.get("mail") or {}).items()
                if isinstance(state, dict)
            },
            run_start_attempt=int(doc.get("run_start_attempt", 1)),
            redrives=[Redrive.from_document(r) for r in doc.get("redrives") or ()],
            cancelled=(
                Cancellation(at=doc["cancelled"]["at"], by=str(doc["cancelled"].get("by", "")))
                if doc.get("cancelled")
                else None
            ),
            held_at=doc.get("held_at"),
            webhooks={
                outcome: WebhookDelivery.from_document(record)
                for outcome, record in (doc.get("webhook") or {}).items()
                if isinstance(record, dict)
            },
        )


def failure_to_document(failure: Failure) -> dict[str, Any]:
    return {
        "kind": failure.kind.value,
        "message": failure.message,
        "retryable": failure.retryable,
        "http_status": failure.http_status,
    }


def failure_from_document(doc: dict[str, Any] | None) -> Failure | None:
    if doc is None:
        return None
    return Failure(
        kind=FailureKind(doc["kind"]),
        message=doc["message"],
        retryable=doc["retryable"],
        http_status=doc.get("http_status"),
    )


def _attempt_from_document(number: int, doc: dict[str, Any]) -> Attempt:
    return Attempt(
        number=number,
        dispatched_at=doc.get("dispatched_at"),
        accepted_at=doc.get("accepted_at"),
        ended_at=doc.get("ended_at"),
        deadline_at=doc.get("deadline_at"),
        callback_token_hash=doc.get("callback_token_hash"),
        failure=failure_from_document(doc.get("failure")),
        report=Report.from_document(doc["report"]) if doc.get("report") else None,
    )
