"""The dispatcher's settings, read from environment variables."""

from __future__ import annotations

from datetime import timedelta

from jobplane.config import CommonSettings
from pydantic import Field


class Settings(CommonSettings):
    group_id: str = "jobplane-dispatcher"
    # Where app backends post their results: the gateway as the backends reach it.
    gateway_public_url: str = "http://127.0.0.1:8000"
    # How many job.requested events are handled at once (each one may wait on a backend).
    concurrency: int = Field(default=64, ge=1)
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    # How long a backend may take to answer the dispatch POST — not the job's run time.
    request_timeout_seconds: float = Field(default=30.0, gt=0)
    # How often to look for attempts past their deadline. Deadlines are minutes long; each
    # look is a query over the open jobs, so not more often than needed.
    deadline_check_interval_seconds: float = Field(default=5.0, gt=0)
    # How long a claimed attempt may stay neither accepted nor reported before a replayed
    # job.requested takes it over (its dispatcher died between claim and call). None: the
    # longest a live call can take (connect + request timeout) plus a margin, so a call in
    # flight is never taken over.
    claim_lease_seconds: float | None = Field(default=None, gt=0)
    # How long after a stored outcome (a failure report, a result at once) its event may stay
    # unpublished before the gateway's relay publishes it (the announce_due_at outbox).
    announce_grace_seconds: float = Field(default=30.0, gt=0)
    # A disabled app's due job is held (not dispatched); it is requested again after this
    # many seconds, or as soon as the app is enabled again, whichever comes first.
    held_recheck_seconds: float = Field(default=60.0, gt=0)

    @property
    def announce_grace(self) -> timedelta:
        return timedelta(seconds=self.announce_grace_seconds)

    def claim_lease(self) -> float:
        if self.claim_lease_seconds is not None:
            return self.claim_lease_seconds
        return self.connect_timeout_seconds + self.request_timeout_seconds + 5.0

    def callback_url(self, job_id: str) -> str:
        return f"{self.gateway_public_url.rstrip('/')}/v1/jobs/{job_id}/result"
