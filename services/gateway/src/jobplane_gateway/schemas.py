"""Request and response bodies of the HTTP API."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from jobplane.events import Failure
from jobplane.jobs import Attempt, Job, JobStatus
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, StringConstraints

AppId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
]
# Path parameters: printable, no slash, bounded.
USER_ID_PATTERN = r"^[^\s/]{1,200}$"
JOB_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,200}$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- apps -------------------------------------------------------------------------------


class AppCreate(_Body):
    app_id: AppId
    backend_url: AnyHttpUrl
    default_timeout_seconds: int = Field(default=3600, gt=0)
    admin_emails: list[Email] = Field(default_factory=list)
    max_concurrency: int = Field(default=16, ge=1)


class AppCreated(BaseModel):
    app_id: str
    api_key: str = Field(description="Shown once: only its hash is stored.")


# -- users ------------------------------------------------------------------------------


class UserIn(_Body):
    email: Email
    language: Literal["en", "ja"] = "en"


class UserOut(BaseModel):
    user_id: str
    email: str
    language: str


# -- jobs -------------------------------------------------------------------------------


class JobSubmit(_Body):
    user_id: Annotated[str, StringConstraints(pattern=USER_ID_PATTERN)]
    job_type: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    payload: dict[str, Any]
    timeout_seconds: int | None = Field(default=None, gt=0)

    def payload_text(self) -> str:
        return json.dumps(self.payload, ensure_ascii=False, separators=(",", ":"))


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


class AttemptOut(BaseModel):
    # Deliberately without the callback token hash.
    attempt: int
    dispatched_at: datetime | None
    accepted_at: datetime | None
    ended_at: datetime | None
    error: ErrorOut | None

    @classmethod
    def of(cls, attempt: Attempt) -> AttemptOut:
        return cls(
            attempt=attempt.number,
            dispatched_at=attempt.dispatched_at,
            accepted_at=attempt.accepted_at,
            ended_at=attempt.ended_at,
            error=ErrorOut.of(attempt.failure),
        )


class NotifiedOut(BaseModel):
    user: bool
    user_at: datetime | None
    admins: bool
    admins_at: datetime | None


class JobOut(BaseModel):
    job_id: str
    app_id: str
    user_id: str
    job_type: str
    status: JobStatus
    attempt: int
    attempts: list[AttemptOut]
    result: Any
    last_error: ErrorOut | None
    notified: NotifiedOut
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, job: Job) -> JobOut:
        return cls(
            job_id=job.job_id,
            app_id=job.app_id,
            user_id=job.user_id,
            job_type=job.job_type,
            status=job.status,
            attempt=job.attempt,
            attempts=[AttemptOut.of(a) for a in job.attempts],
            result=json.loads(job.result) if job.result is not None else None,
            last_error=ErrorOut.of(job.last_failure),
            notified=NotifiedOut(
                user=job.notified_user_at is not None,
                user_at=job.notified_user_at,
                admins=job.notified_admins_at is not None,
                admins_at=job.notified_admins_at,
            ),
            next_attempt_at=job.next_attempt_at,
            created_at=job.created_at,
            updated_at=job.updated_at,
        )


# -- result callback ----------------------------------------------------------------------


class ReportedError(BaseModel):
    message: Annotated[str, StringConstraints(max_length=10_000)]
    retryable: bool = True


class ResultIn(BaseModel):
    attempt: int = Field(ge=1)
    status: Literal["succeeded", "failed"]
    result: Any = None
    error: ReportedError | None = None


class ResultRecorded(BaseModel):
    recorded: bool
    detail: str


# -- misc ---------------------------------------------------------------------------------


class Health(BaseModel):
    status: str
