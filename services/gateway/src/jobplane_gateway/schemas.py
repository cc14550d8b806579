"""Request and response bodies of the HTTP API, and what the gateway accepts at its door.

Everything a request brings is checked here, before anything is stored: ids and job types
are drawn from small ASCII sets (no control characters, no line breaks of any kind: they
end up in e-mail headers, log lines and Kafka keys), addresses go through a real e-mail
validator, every number has bounds that the Avro events and the store's dates can hold.
"""

from __future__ import annotations

import json
import unicodedata
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import HTTPException, status
from jobplane.events import Failure, FailureKind
from jobplane.jobs import Attempt, Cancellation, Job, JobStatus, Redrive, Report
from jobplane.store import App, Notification
from jobplane.validation import (
    APP_ID_PATTERN,
    JOB_ID_PATTERN,
    JOB_TYPE_PATTERN,
    MAX_TIMEOUT_SECONDS,
    MIN_TIMEOUT_SECONDS,
    USER_ID_PATTERN,
    json_text,
)
from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    UrlConstraints,
    model_validator,
)

MAX_CONCURRENCY = 10_000
MAX_ADMIN_EMAILS = 50
MAX_ERROR_MESSAGE_CHARS = 10_000

# Printable ASCII without space.
IDEMPOTENCY_KEY_PATTERN = r"^[!-~]{1,200}$"

AppId = Annotated[str, StringConstraints(pattern=APP_ID_PATTERN)]
UserId = Annotated[str, StringConstraints(pattern=USER_ID_PATTERN)]
JobType = Annotated[str, StringConstraints(pattern=JOB_TYPE_PATTERN)]
# Strict: a whole number of seconds in JSON, not "60" nor 60.5.
Timeout = Annotated[int, Field(ge=MIN_TIMEOUT_SECONDS, le=MAX_TIMEOUT_SECONDS, strict=True)]
# email-validator refuses control characters, line separators and malformed domains.
Email = EmailStr

# Free text may hold tabs and line feeds, nothing else of Unicode's control and separator
# classes (which include \x1c-\x1e, \x85, \u2028 and \u2029: line breaks to splitlines()).
_ALLOWED_CONTROLS = frozenset("\t\n\r")
_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


def _no_control_characters(text: str) -> str:
    for index, char in enumerate(text):
        if char not in _ALLOWED_CONTROLS and unicodedata.category(char) in _REFUSED_CATEGORIES:
            raise ValueError(f"control character U+{ord(char):04X} at position {index}")
    return text


FreeText = Annotated[str, AfterValidator(_no_control_characters)]


def check_size(text: str, what: str, limit: int, setting: str) -> None:
    """``413`` when the JSON ``text`` of ``what`` is over ``limit`` bytes (UTF-8)."""
    size = len(text.encode())
    if size > limit:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            detail=f"the {what} is {size} bytes of JSON; the limit is {limit} bytes ({setting})",
        )


def _json_value(value: Any) -> Any:
    json_text(value)
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_json_value)]
JsonValue = Annotated[Any, AfterValidator(_json_value)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- apps -------------------------------------------------------------------------------


_WEBHOOK_URL_DOC = (
    "Where Jobplane POSTs each outcome of the app's jobs (succeeded, dead), signed with the "
    "app's webhook secret (header `Jobplane-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "
    '"<t>.<body>">`).'
)
_WEBHOOK_KEY_DOC = (
    "The secret that signs the app's webhooks: shown in this answer only (when it is new)."
)
WebhookUrl = Annotated[AnyHttpUrl, UrlConstraints(max_length=2000)]


class AppCreate(_Body):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "app_id": "photos",
                    "backend_url": "https://photos.example/jobplane/jobs",
                    "default_timeout_seconds": 600,
                    "admin_emails": ["ops@photos.example"],
                    "max_concurrency": 16,
                }
            ]
        }
    )

    app_id: AppId
    backend_url: Annotated[AnyHttpUrl, UrlConstraints(max_length=2000)]
    default_timeout_seconds: Timeout = 3600
    admin_emails: list[Email] = Field(default_factory=list, max_length=MAX_ADMIN_EMAILS)
    max_concurrency: int = Field(default=16, ge=1, le=MAX_CONCURRENCY)
    webhook_url: WebhookUrl | None = Field(default=None, description=_WEBHOOK_URL_DOC)


class AppCreated(BaseModel):
    app_id: str
    api_key: str = Field(description="Shown once: only its hash is stored.")
    webhook_secret: str | None = Field(default=None, description=_WEBHOOK_KEY_DOC)


class AppUpdate(_Body):
    """The fields to change; those left out stay as they are."""

    backend_url: Annotated[AnyHttpUrl, UrlConstraints(max_length=2000)] | None = None
    default_timeout_seconds: Timeout | None = None
    admin_emails: list[Email] | None = Field(default=None, max_length=MAX_ADMIN_EMAILS)
    max_concurrency: int | None = Field(default=None, ge=1, le=MAX_CONCURRENCY)
    disabled: bool | None = Field(
        default=None,
        description=(
            "A disabled app's new jobs are refused (403); its queued jobs are held (not "
            "dispatched, not lost) until it is enabled again. "
            "Other gateways see the change within 10 seconds (their app cache)."
        ),
    )
    webhook_url: WebhookUrl | None = Field(
        default=None,
        description=_WEBHOOK_URL_DOC + " `null` removes it (and its secret).",
    )
    rotate_webhook_secret: bool | None = Field(
        default=None,
        description=(
            "`true`: a new webhook secret replaces the old one (in the answer, once); for 24 "
            "hours deliveries are signed with both (two `v1=` in `Jobplane-Signature`). An "
            "app given its first webhook URL gets a secret anyway."
        ),
    )

    @model_validator(mode="after")
    def _changes_something(self) -> AppUpdate:
        if not self.model_fields_set:
            raise ValueError("nothing to change: send at least one field")
        for name in self.model_fields_set - {"webhook_url"}:
            if getattr(self, name) is None:
                raise ValueError(f'"{name}" cannot be null: leave it out to keep it')
        return self

    def changes(self) -> dict[str, Any]:
        """The app document's fields to set (the webhook's are the route's business)."""
        changes = self.model_dump(
            exclude_unset=True, exclude={"webhook_url", "rotate_webhook_secret"}
        )
        if self.backend_url is not None:
            changes["backend_url"] = str(self.backend_url)
        return changes


class AppOut(BaseModel):
    """An app as the administrators see it (never its key, nor the key's hash)."""

    app_id: str
    backend_url: str
    default_timeout_seconds: int
    admin_emails: list[str]
    max_concurrency: int
    disabled: bool
    created_at: datetime
    updated_at: datetime | None
    webhook_url: str | None = None

    @classmethod
    def of(cls, app: App) -> AppOut:
        # Only the fields above are read from the app: never its key hash nor its secret.
        return cls.model_validate(app, from_attributes=True)


class AppUpdated(AppOut):
    webhook_secret: str | None = Field(default=None, description=_WEBHOOK_KEY_DOC)


class AppList(BaseModel):
    apps: list[AppOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: last.")


# -- users ------------------------------------------------------------------------------


class UserIn(_Body):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"email": "hanako@example.com", "language": "ja"}]}
    )

    email: Email
    language: Literal["en", "ja"] = "en"


class UserOut(BaseModel):
    user_id: str
    email: str
    language: str


class UserList(BaseModel):
    users: list[UserOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: last.")


# -- jobs -------------------------------------------------------------------------------


class JobSubmit(_Body):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "user_id": "hanako",
                    "job_type": "thumbnail",
                    "payload": {"photo": "uploads/p1.jpg", "sizes": [64, 256]},
                    "timeout_seconds": 300,
                }
            ]
        }
    )

    user_id: UserId
    job_type: JobType
    payload: JsonObject = Field(
        description=(
            "Any JSON object; its JSON text may be at most MAX_PAYLOAD_BYTES (UTF-8 bytes; "
            "this gateway's value is in the API description), else 413."
        )
    )
    timeout_seconds: Timeout | None = Field(
        default=None,
        description="How long one attempt may take; the app's default when left out.",
    )

    def payload_text(self) -> str:
        return json_text(self.payload)


class JobAccepted(BaseModel):
    job_id: str
    status: JobStatus
    status_url: str


class ErrorOut(BaseModel):
    kind: str
    message: str
    retryable: bool
    http_status: int | None

    @classmethod
    def of(cls, failure: Failure | None) -> ErrorOut | None:
        if failure is None:
            return None
        return cls(
            kind=failure.kind.value,
            message=failure.message,
            retryable=failure.retryable,
            http_status=failure.http_status,
        )


class ReportOut(BaseModel):
    """The attempt's outcome as first reported (by the backend, or the dispatcher)."""

    status: Literal["succeeded", "failed"]
    at: datetime
    error: ErrorOut | None

    @classmethod
    def of(cls, report: Report | None) -> ReportOut | None:
        if report is None:
            return None
        return cls(status=report.status, at=report.at, error=ErrorOut.of(report.failure))


class AttemptOut(BaseModel):
    # Deliberately without the callback token hash.
    attempt: int
    dispatched_at: datetime | None
    accepted_at: datetime | None
    ended_at: datetime | None
    error: ErrorOut | None
    report: ReportOut | None

    @classmethod
    def of(cls, attempt: Attempt) -> AttemptOut:
        return cls(
            attempt=attempt.number,
            dispatched_at=attempt.dispatched_at,
            accepted_at=attempt.accepted_at,
            ended_at=attempt.ended_at,
            error=ErrorOut.of(attempt.failure),
            report=ReportOut.of(attempt.report),
        )


class NotifiedOut(BaseModel):
    user: bool
    user_at: datetime | None
    admins: bool
    admins_at: datetime | None


_ATTEMPT_DOC = "The latest attempt begun: the last of `attempts` (0 before the first dispatch)."
_NEXT_ATTEMPT_DOC = (
    "The attempt that waits for its dispatch while the job is `queued` or `retry_scheduled` "
    "(at `next_attempt_at` for a retry); null otherwise."
)
WAITING_STATUSES = (JobStatus.QUEUED, JobStatus.RETRY_SCHEDULED)


def attempt_numbers(job: Job) -> tuple[int, int | None]:
    """``(attempt, next_attempt)`` as the API shows them: the stored ``attempt`` is the
    current or the next due one; the API separates the two."""
    latest = max((a.number for a in job.attempts), default=0)
    return latest, job.attempt if job.status in WAITING_STATUSES else None


class JobSummary(BaseModel):
    """A job in a listing (without its payload and result)."""

    job_id: str
    app_id: str
    user_id: str
    job_type: str
    status: JobStatus
    attempt: int = Field(description=_ATTEMPT_DOC)
    next_attempt: int | None = Field(description=_NEXT_ATTEMPT_DOC)
    last_error: ErrorOut | None
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, job: Job) -> JobSummary:
        return cls(**_summary_fields(job))


def _summary_fields(job: Job) -> dict[str, Any]:
    attempt, next_attempt = attempt_numbers(job)
    return {
        "job_id": job.job_id,
        "app_id": job.app_id,
        "user_id": job.user_id,
        "job_type": job.job_type,
        "status": job.status,
        "attempt": attempt,
        "next_attempt": next_attempt,
        "last_error": ErrorOut.of(job.last_failure),
        "next_attempt_at": job.next_attempt_at,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
    }


class JobList(BaseModel):
    jobs: list[JobSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: last.")


class Stats(BaseModel):
    """How many jobs are in each status, in all and per app."""

    total: int
    by_status: dict[JobStatus, int]
    by_app: dict[str, dict[JobStatus, int]]


class RedriveOut(BaseModel):
    """One redrive of the dead job: its earlier run ended at ``from_attempt``."""

    at: datetime
    by: str = Field(description='"admin", or "app:<app_id>" for the app\'s own redrive.')
    from_attempt: int = Field(description="The attempt the earlier run died at.")
    error: ErrorOut | None = Field(description="The failure the earlier run died of.")
    user_mails: dict[str, str] = Field(description="The earlier run's mails to the user.")

    @classmethod
    def of(cls, redrive: Redrive) -> RedriveOut:
        return cls(
            at=redrive.at,
            by=redrive.by,
            from_attempt=redrive.from_attempt,
            error=ErrorOut.of(redrive.failure),
            user_mails=redrive.mail_states,
        )


class CancelledOut(BaseModel):
    at: datetime
    by: str = Field(description='"admin", or "app:<app_id>".')

    @classmethod
    def of(cls, cancellation: Cancellation | None) -> CancelledOut | None:
        if cancellation is None:
            return None
        return cls(at=cancellation.at, by=cancellation.by)


_RUN_ATTEMPT_DOC = (
    "The latest attempt counted from the start of the current run: equal to `attempt` "
    "until the job is redriven. A redriven job's attempt numbers go on from the attempt it "
    "died at (`attempts` keeps every run's); its retry allowance starts over."
)


class WebhookOut(BaseModel):
    """The app's webhook about the job's outcome."""

    outcome: str = Field(description='"succeeded" or "dead".')
    state: str = Field(description='"claimed" (being POSTed), "sent", "retrying" or "failed".')
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    sent_at: datetime | None

    @classmethod
    def of(cls, job: Job) -> WebhookOut | None:
        """The delivery of the job's present outcome (earlier runs' are history)."""
        outcome = job.status.value
        delivery = job.webhooks.get(outcome)
        if delivery is None:
            return None
        return cls(
            outcome=outcome,
            state=delivery.state,
            attempts=delivery.attempts,
            last_error=delivery.last_error,
            next_attempt_at=delivery.next_attempt_at,
            sent_at=delivery.sent_at,
        )


class JobOut(JobSummary):
    """A job with its whole timeline: every attempt, the result, the notifications, its
    redrives, its cancellation, whether it is held (its app is disabled)."""

    attempts: list[AttemptOut]
    result: Any
    notified: NotifiedOut
    run_attempt: int = Field(description=_RUN_ATTEMPT_DOC)
    redrives: list[RedriveOut] = Field(description="Every redrive of the job, oldest first.")
    cancelled: CancelledOut | None = Field(description="Who cancelled the job, and when.")
    held_at: datetime | None = Field(
        description="Set while the job waits because its app is disabled: it is not "
        "dispatched, and runs when the app is enabled again."
    )
    webhook: WebhookOut | None = Field(
        default=None, description="The app's outcome webhook; null: none (yet)."
    )

    @classmethod
    def of(cls, job: Job) -> JobOut:
        summary = _summary_fields(job)
        return cls(
            **summary,
            attempts=[AttemptOut.of(a) for a in job.attempts],
            result=json.loads(job.result) if job.result is not None else None,
            notified=NotifiedOut(
                user=job.user_notified,
                user_at=job.notified_user_at,
                admins=job.notified_admins_at is not None,
                admins_at=job.notified_admins_at,
            ),
            run_attempt=max(0, summary["attempt"] - job.run_start_attempt + 1),
            redrives=[RedriveOut.of(r) for r in job.redrives],
            cancelled=CancelledOut.of(job.cancelled),
            held_at=job.held_at,
            webhook=WebhookOut.of(job),
        )


class NotificationOut(BaseModel):
    """A mail about the job other than the user's (an administrators' alert)."""

    recipient: str
    kind: str
    state: str = Field(description='"claimed" (being sent), "sent" or "failed".')
    claimed_at: datetime | None
    sent_at: datetime | None
    failed_at: datetime | None
    reason: str | None

    @classmethod
    def of(cls, notification: Notification) -> NotificationOut:
        return cls.model_validate(notification, from_attributes=True)


class AdminJobOut(JobOut):
    """A job as the administrators see it: also its payload, the user's mails, the alerts
    sent about it and the event it still owes (the outbox)."""

    payload: Any
    trace_id: str
    idempotency_key: str | None
    user_mails: dict[str, str] = Field(description='Per outcome: "claimed" or "sent".')
    notifications: list[NotificationOut]
    announce_due_at: datetime | None = Field(
        description="Set while an event about the job is owed; the relay re-publishes it then."
    )
    announce_relays: int

    @classmethod
    def of_admin(cls, job: Job, notifications: list[Notification]) -> AdminJobOut:
        return cls(
            **JobOut.of(job).model_dump(),
            payload=json.loads(job.payload),
            trace_id=job.trace_id,
            idempotency_key=job.idempotency_key,
            user_mails=job.mail_states,
            notifications=[NotificationOut.of(n) for n in notifications],
            announce_due_at=job.announce_due_at,
            announce_relays=job.announce_relays,
        )


# -- result callback ----------------------------------------------------------------------


class ReportedError(_Body):
    message: Annotated[FreeText, StringConstraints(max_length=MAX_ERROR_MESSAGE_CHARS)]
    retryable: bool = True


class ResultIn(_Body):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"attempt": 1, "status": "succeeded", "result": {"thumbnail": "t/p1.png"}},
                {
                    "attempt": 2,
                    "status": "failed",
                    "error": {"message": "the photo is not an image", "retryable": False},
                },
            ]
        }
    )

    # Attempts are few (1 + the retries): the bound only keeps the number a small int.
    attempt: int = Field(ge=1, le=1000)
    status: Literal["succeeded", "failed"]
    result: JsonValue = Field(
        default=None,
        description=(
            'With "succeeded": any JSON value, at most MAX_RESULT_BYTES of JSON text, else 413.'
        ),
    )
    error: ReportedError | None = Field(
        default=None, description='Required with "failed"; not allowed with "succeeded".'
    )

    @model_validator(mode="after")
    def _failure_says_what(self) -> ResultIn:
        if self.status == "failed" and self.error is None:
            raise ValueError('"status": "failed" needs an "error": {"message", "retryable"}')
        if self.status == "succeeded" and self.error is not None:
            raise ValueError('"status": "succeeded" takes a "result", not an "error"')
        return self

    def result_text(self) -> str:
        return json_text(self.result)


class ResultRecorded(BaseModel):
    recorded: bool
    detail: str


# -- misc ---------------------------------------------------------------------------------


class Health(BaseModel):
    status: str


# -- operators: redrive and cancel --------------------------------------------------------

MAX_REDRIVE = 1000
JobId = Annotated[str, StringConstraints(pattern=JOB_ID_PATTERN)]


class RedriveRequest(_Body):
    """Which dead jobs to redrive: ``job_ids``, or a filter (every field narrows it; none:
    every dead job in reach). ``since`` / ``until`` bound the jobs' creation time."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"job_ids": ["4f1c0d9e8a7b4c3d9e8f7a6b5c4d3e2f"]},
                {
                    "app_id": "photo-app",
                    "failure_kind": "timeout",
                    "since": "2026-11-23T00:00:00Z",
                    "dry_run": True,
                    "limit": 100,
                    "rate_per_second": 20,
                },
            ]
        }
    )

    job_ids: list[JobId] | None = Field(
        default=None, min_length=1, max_length=MAX_REDRIVE, description="These jobs only."
    )
    app_id: AppId | None = Field(
        default=None, description="Admin only: one app's dead jobs (an app redrives its own)."
    )
    failure_kind: FailureKind | None = Field(
        default=None, description="Dead jobs whose last failure is of this kind."
    )
    since: datetime | None = Field(default=None, description="Jobs created at or after.")
    until: datetime | None = Field(default=None, description="Jobs created before.")
    dry_run: bool = Field(default=False, description="List what would be redriven, change nothing.")
    limit: int = Field(
        default=100, ge=1, le=MAX_REDRIVE, description="At most this many jobs of a filter."
    )
    rate_per_second: float = Field(
        default=20.0, gt=0, le=1000, description="At most this many redrives per second."
    )

    @model_validator(mode="after")
    def _ids_or_filter(self) -> RedriveRequest:
        if self.job_ids is not None and (
            self.app_id or self.failure_kind or self.since or self.until
        ):
            raise ValueError("give either job_ids or a filter (app_id, failure_kind, since, until)")
        for name in ("since", "until"):
            moment = getattr(self, name)
            if moment is not None and moment.tzinfo is None:
                raise ValueError(f"{name} needs a time zone (for example 2026-01-01T00:00:00Z)")
        return self


class SkippedJob(BaseModel):
    job_id: str
    reason: str = Field(examples=["not dead (succeeded)"])


class RedriveResult(BaseModel):
    """What the redrive did (or, on a dry run, would do)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "dry_run": False,
                    "matched": 2,
                    "redriven": ["4f1c0d9e8a7b4c3d9e8f7a6b5c4d3e2f"],
                    "skipped": [
                        {
                            "job_id": "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
                            "reason": "no longer dead: redriven already, or moved on",
                        }
                    ],
                }
            ]
        }
    )

    dry_run: bool
    matched: int = Field(description="How many dead jobs the request picked.")
    redriven: list[str] = Field(
        description="The jobs redriven (queued again), or on a dry run those that would be."
    )
    skipped: list[SkippedJob] = Field(description="Jobs named or picked but not redriven.")


class CancelConflict(BaseModel):
    """``409``: the job finished already; nothing was changed."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"detail": "job '4f1c0d9e' is succeeded already", "status": "succeeded"}]
        }
    )

    detail: str
    status: JobStatus = Field(description="The job's status: succeeded, dead or cancelled.")
