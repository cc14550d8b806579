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
        gateway's relay publish what it owes."""
        decision = self.policy.decide(event.failure, event.attempt, self.clock())
        if isinstance(decision, ScheduleRetry):
            await self._schedule(event, decision)
        else:
            await self._give_up(event, decision)

    async def _schedule(self, event: JobFailed, decision: ScheduleRetry) -> None:
        attempt = event.attempt
        job = await self.store.schedule_retry(
            event.job_id,
            attempt,
            event.failure,
            decision.due_at,
            announce_grace=self.announce_grace,
        )
        if job is None:
            await self._unchanged(event)
            return
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
                job_id=event.job_id,
                app_id=event.app_id,
                user_id=event.user_id,
                attempt=attempt,
                trace_id=event.trace_id,
                job_type=event.job_type,
                payload=event.payload,
                timeout_seconds=event.timeout_seconds,
                failure=event.failure,
                retry_number=decision.tier,
                due_at=decision.due_at,
            ),
        )

    async def _give_up(self, event: JobFailed, decision: GiveUp) -> None:
        job = await self.store.mark_dead(
            event.job_id, event.attempt, event.failure, announce_grace=self.announce_grace
        )
        if job is None:
            await self._unchanged(event)
            return
        log.warning("job is dead", extra=fields(attempt=event.attempt, reason=decision.reason))
        await self._publish_dead(event, decision.reason, tuple(a.to_record() for a in job.attempts))

    async def _unchanged(self, event: JobFailed) -> None:
        """The guard matched nothing: read the job (the slow path) to tell why."""
        current = await self.store.get_job(event.job_id)
        if current is None:
            # Nothing was ever stored (e.g. an unknown app): nothing to retry either, and no
            # outbox to announce it; say it on job.dead so the admins hear of it.
            log.warning(
                "failure of an unknown job; giving up",
                extra=fields(attempt=event.attempt, reason=event.failure.message),
            )
            await self._publish_dead(event, event.failure.message, ())
            return
        _log_stale(event, current)

    async def _publish_dead(
        self, event: JobFailed, reason: str, attempts: tuple[AttemptRecord, ...]
    ) -> None:
        await self.publisher.publish(
            self.topics.dead,
            JobDead(
                job_id=event.job_id,
                app_id=event.app_id,
                user_id=event.user_id,
                attempt=event.attempt,
                trace_id=event.trace_id,
                job_type=event.job_type,
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
