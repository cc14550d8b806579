"""The platform's answers, typed. Unknown fields are kept (``extra``): a newer platform may
add some, an older client keeps working."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

FINISHED = ("succeeded", "dead", "cancelled")


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


class SubmittedJob(_Answer):
    job_id: str
    status: str
    status_url: str


class JobError(_Answer):
    kind: str
    message: str
    retryable: bool | None = None
    http_status: int | None = None


class Webhook(_Answer):
    outcome: str
    state: str
    attempts: int
    last_error: str | None = None


class Job(_Answer):
    job_id: str
    app_id: str
    user_id: str
    job_type: str
    status: str
    attempt: int
    last_error: JobError | None = None
    next_attempt_at: datetime | None = None
    created_at: datetime
    updated_at: datetime
    result: Any = None
    attempts: list[dict[str, Any]] = []
    webhook: Webhook | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


class User(_Answer):
    user_id: str
    email: str
    language: Literal["en", "ja"]
