"""The deadline sweeper: an attempt without a result by its deadline has failed (timeout).

Every interval it reports each overdue attempt whose outcome is still unknown: the timeout
is stored as the attempt's report (one guarded write, which also drops the deadline), then
published on ``job.failed``. The first report of an attempt wins: a callback, the
dispatcher's own failure report or another instance's sweep that came first makes the write
match nothing, and nothing is published.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from jobplane import metrics, tracing
from jobplane.events import Failure, FailureKind
from jobplane.jobs import Job
from jobplane.kafka import Publisher
from jobplane.logs import bind, fields
from jobplane.store import DEFAULT_ANNOUNCE_GRACE, JobStore, utcnow
from jobplane.topics import Topics

log = logging.getLogger(__name__)

BATCH = 100


class DeadlineSweeper:
    def __init__(
        self,
        store: JobStore,
        publisher: Publisher,
        topics: Topics,
        interval_seconds: float,
        announce_grace: timedelta = DEFAULT_ANNOUNCE_GRACE,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.topics = topics
        self.interval_seconds = interval_seconds
        self.announce_grace = announce_grace

    async def run(self) -> None:
        """Sweep every interval until cancelled; a failing sweep is logged and retried."""
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("deadline sweep failed; will try again")
            await asyncio.sleep(self.interval_seconds)

    async def sweep(self, now: datetime | None = None) -> int:
        """Report every attempt overdue at ``now``; returns how many were reported."""
        now = now or utcnow()
        reported = 0
        while True:
            jobs = await self.store.overdue_attempts(now, limit=BATCH)
            for job in jobs:
                await self.report(job)
            reported += len(jobs)
            if len(jobs) < BATCH:
                return reported

    async def report(self, job: Job) -> None:
        with bind(trace_id=job.trace_id, job_id=job.job_id, attempt=str(job.attempt)):
            deadline = job.deadline_at.isoformat() if job.deadline_at else "?"
            failure = Failure(
                kind=FailureKind.TIMEOUT,
                message=f"no result by the deadline {deadline}",
                retryable=True,
            )
            reported = await self.store.report_failure(
                job.job_id, job.attempt, failure, announce_grace=self.announce_grace
            )
            if reported is None:
                return  # its outcome was reported first
            metrics.BACKEND_FAILURES.labels(failure.kind.value).inc()
            log.warning("attempt timed out", extra=fields(deadline=deadline))
            attributes: dict[str, str | int] = {
                "jobplane.job_id": job.job_id,
                "jobplane.attempt": job.attempt,
            }
            with tracing.span("deadline passed", job.trace_id, attributes=attributes):
                await self.publisher.publish(self.topics.failed, job.failed_event(failure))
