"""``job.failed`` → ``job.retry.N`` (a retry is scheduled) or ``job.dead`` (given up).

The store's guarded transition decides: the first failure reported for an attempt wins.
A replayed or stale event matches nothing and publishes nothing (the job's
``announce_due_at`` outbox covers a crash between the write and the publish). Failures are
routed concurrently, one job's in order (the event loop serializes events of one key).

No Kafka transaction here, unlike the delay tiers: the decision of record is the store
write, which no Kafka transaction can include. Producing ``job.retry.N`` and committing the
``job.failed`` offset atomically would not make the write-then-publish step atomic; the
outbox does (a lost publish is made by the relay, a replay writes and publishes nothing).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from jobplane import metrics
from jobplane.events import AttemptRecord, Event, JobDead, JobFailed, JobRetryScheduled
from jobplane.jobs import Job
from jobplane.kafka import Handler, PermanentError, Publisher, Record
from jobplane.logs import fields
from jobplane.store import DEFAULT_ANNOUNCE_GRACE, JobStore, utcnow
from jobplane.topics import Topics

from jobplane_retry.policy import GiveUp, RetryPolicy, ScheduleRetry

log = logging.getLogger(__name__)


class Router:
    def __init__(
        self,
        store: JobStore,
        publisher: Publisher,
        topics: Topics,
        policy: RetryPolicy,
        clock: Callable[[], datetime] = utcnow,
        announce_grace: timedelta = DEFAULT_ANNOUNCE_GRACE,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.topics = topics
        self.policy = policy
        self.clock = clock
        self.announce_grace = announce_grace

    async def handle(self, event: Event, record: Record) -> None:
        if not isinstance(event, JobFailed):
            raise PermanentError(
                f"expected JobFailed on {record.topic}, got {type(event).__name__}"
            )
        await self.route(event)

    async def route(self, event: JobFailed) -> None:
        """One guarded write decides; then the decision is published. A write that matches
        nothing (a replay, a stale report) publishes nothing: if an earlier delivery of this
        event wrote but crashed before publishing, the job's announce_due_at makes the
        gateway's relay publish what it owes.

        The retry allowance counts from the job's run: a redriven job's attempt numbers
        go on from where it died, its run starts at ``run_start_attempt``. The first write
        assumes a job never redriven (no read on the common path); only when it matches
        nothing is the job read, and a redriven job's failure decided again, counted from
        its run's start."""
        if await self._decide(event, event.attempt, run_start_attempt=None):
            return
        current = await self.store.get_job(event.job_id)
        if current is None:
            await self._unknown(event)
            return
        start = current.run_start_attempt
        if start > 1 and current.attempt == event.attempt:
            run_attempt = event.attempt - start + 1
            if await self._decide(event, run_attempt, run_start_attempt=start):
                return
            current = await self.store.get_job(event.job_id)
        _log_stale(event, current)

    async def _decide(
        self, event: JobFailed, run_attempt: int, *, run_start_attempt: int | None
    ) -> bool:
        """Decide with the attempt counted from the run's start, write, publish; False when
        the write matched nothing."""
        decision = self.policy.decide(event.failure, run_attempt, self.clock())
        if isinstance(decision, ScheduleRetry):
            return await self._schedule(event, decision, run_start_attempt)
        return await self._give_up(event, decision, run_start_attempt)

    async def _schedule(
        self, event: JobFailed, decision: ScheduleRetry, run_start_attempt: int | None
    ) -> bool:
        attempt = event.attempt
        job = await self.store.schedule_retry(
            event.job_id,
            attempt,
            event.failure,
            decision.due_at,
            announce_grace=self.announce_grace,
            run_start_attempt=run_start_attempt,
        )
        if job is None:
            return False
        metrics.RETRIES_SCHEDULED.labels(str(decision.tier)).inc()
        log.info(
            "retry scheduled",
            extra=fields(
                attempt=attempt, tier=decision.tier, due_at=decision.due_at.isoformat(),
                failure=event.failure.message,
            ),
        )  # fmt: skip
        await self.publisher.publish(
            self.topics.retry(decision.tier),
            JobRetryScheduled(
                **event.envelope.fields(attempt=attempt),
                payload=event.payload,
                timeout_seconds=event.timeout_seconds,
                failure=event.failure,
                retry_number=decision.tier,
                due_at=decision.due_at,
            ),
        )
        return True

    async def _give_up(
        self, event: JobFailed, decision: GiveUp, run_start_attempt: int | None
    ) -> bool:
        job = await self.store.mark_dead(
            event.job_id,
            event.attempt,
            event.failure,
            announce_grace=self.announce_grace,
            run_start_attempt=run_start_attempt,
        )
        if job is None:
            return False
        metrics.JOBS_DEAD.labels(job.app_id, job.job_type, event.failure.kind.value).inc()
        metrics.observe_outcome("dead", job.created_at, job.updated_at)
        log.warning("job is dead", extra=fields(attempt=event.attempt, reason=decision.reason))
        await self._publish_dead(event, decision.reason, tuple(a.to_record() for a in job.attempts))
        return True

    async def _unknown(self, event: JobFailed) -> None:
        """Nothing was ever stored (e.g. an unknown app): nothing to retry either, and no
        outbox to announce it; say it on job.dead so the admins hear of it."""
        log.warning(
            "failure of an unknown job; giving up",
            extra=fields(attempt=event.attempt, reason=event.failure.message),
        )
        # Not the event's ids as labels: anything may be produced to Kafka directly.
        unknown = metrics.UNKNOWN
        metrics.JOBS_DEAD.labels(unknown, unknown, event.failure.kind.value).inc()
        await self._publish_dead(event, event.failure.message, ())

    async def _publish_dead(
        self, event: JobFailed, reason: str, attempts: tuple[AttemptRecord, ...]
    ) -> None:
        await self.publisher.publish(
            self.topics.dead,
            JobDead(
                **event.envelope.fields(),
                reason=reason,
                failure=event.failure,
                attempts=attempts,
            ),
        )


def _log_stale(event: JobFailed, job: Job | None) -> None:
    log.info(
        "failure changes nothing: the job has moved on",
        extra=fields(
            attempt=event.attempt,
            job_status=job.status.value if job else None,
            job_attempt=job.attempt if job else None,
        ),
    )


def make_handler(router: Router) -> Handler:
    return router.handle
