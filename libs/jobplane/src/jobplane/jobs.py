"""The job as the store keeps it: its status, its attempts and its outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from jobplane.events import AttemptRecord, Failure, FailureKind, JobCompleted, JobFailed


class JobStatus(StrEnum):
    QUEUED = "queued"  # accepted, waiting for its first dispatch
    DISPATCHED = "dispatched"  # the dispatcher is calling the app's backend
    RUNNING = "running"  # the backend accepted the attempt; its result comes by callback
    RETRY_SCHEDULED = "retry_scheduled"  # the attempt failed; the next one is due later
    SUCCEEDED = "succeeded"
    DEAD = "dead"  # retries exhausted or a permanent failure

    @property
    def finished(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.DEAD)


# An attempt whose outcome may still be reported: a callback or a failure for it counts.
OPEN_STATUSES = (JobStatus.DISPATCHED, JobStatus.RUNNING)
# A job that may still be handed a failure report (a rejection can precede any dispatch).
FAILABLE_STATUSES = (JobStatus.QUEUED, JobStatus.DISPATCHED, JobStatus.RUNNING)


@dataclass(frozen=True, slots=True)
class Attempt:
    number: int
    dispatched_at: datetime | None = None
    accepted_at: datetime | None = None
    ended_at: datetime | None = None
    deadline_at: datetime | None = None
    callback_token_hash: str | None = None
    failure: Failure | None = None
    reported: bool = False  # a first report (success or failure) of the attempt is stored

    def to_record(self) -> AttemptRecord:
        return AttemptRecord(
            attempt=self.number,
            dispatched_at=self.dispatched_at,
            ended_at=self.ended_at,
            failure=self.failure,
        )


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

    def failed_event(self, failure: Failure, trace_id: str | None = None) -> JobFailed:
        """The report that the current attempt failed; it carries the request along."""
        return JobFailed(
            job_id=self.job_id,
            app_id=self.app_id,
            user_id=self.user_id,
            attempt=self.attempt,
            trace_id=trace_id or self.trace_id,
            job_type=self.job_type,
            payload=self.payload,
            timeout_seconds=self.timeout_seconds,
            failure=failure,
        )

    def completed_event(self, trace_id: str | None = None) -> JobCompleted:
        """The announcement of a succeeded job's result."""
        return JobCompleted(
            job_id=self.job_id,
            app_id=self.app_id,
            user_id=self.user_id,
            attempt=self.attempt,
            trace_id=trace_id or self.trace_id,
            job_type=self.job_type,
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
        reported="report" in doc,
    )
