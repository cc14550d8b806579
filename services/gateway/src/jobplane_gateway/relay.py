"""The outbox relay: what is stored is announced.

Every write that makes an event owed sets the job's ``announce_due_at`` (now + the grace);
the consumer that acts on the event clears it in its own guarded write. A job still owing
its event after the grace was written but never announced (Kafka did not ack, the process
died between write and publish) or announced and not yet acted on. The relay, running in
every gateway, takes such jobs (oldest first, ``relay_batch`` at a time), re-publishes what
the job's state owes (``Job.owed_event``) and pushes ``announce_due_at`` forward with a
backoff that doubles from the grace up to ``relay_max_backoff_seconds``. Taking a job is a
guarded write on the ``announce_due_at`` that was read, so among several gateways one
relays it; a duplicate event would be harmless anyway (every consumer's effect is guarded).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

from jobplane import metrics
from jobplane.jobs import OwedTopic
from jobplane.kafka import Publisher, error_cause
from jobplane.logs import bind, fields
from jobplane.store import JobStore, utcnow
from jobplane.topics import Topics

from jobplane_gateway.config import Settings
from jobplane_gateway.publishing import PUBLISH_ERRORS

log = logging.getLogger(__name__)

# Causes of the relay's outage lines (rate-limited per cause by jobplane.logs.RepeatFilter).
RELAY_PUBLISH = "gateway.relay.publish"
RELAY_ROUND = "gateway.relay.round"


class Relay:
    def __init__(
        self, store: JobStore, publisher: Publisher, topics: Topics, settings: Settings
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.topics = topics
        self.interval_seconds = settings.relay_interval_seconds
        self.batch = settings.relay_batch
        self.grace = settings.announce_grace
        self.max_backoff = timedelta(seconds=settings.relay_max_backoff_seconds)
        self.publish_timeout_seconds = settings.publish_timeout_seconds

    def backoff(self, relays: int) -> timedelta:
        """How long after its ``relays``-th re-publication a job's event is owed again."""
        backoff: timedelta = self.grace * 2 ** min(relays, 32)
        return min(backoff, self.max_backoff)

    def topic(self, owed: OwedTopic) -> str:
        return {
            OwedTopic.REQUESTED: self.topics.requested,
            OwedTopic.COMPLETED: self.topics.completed,
            OwedTopic.FAILED: self.topics.failed,
            OwedTopic.DEAD: self.topics.dead,
        }[owed]

    async def run_once(self) -> int:
        """Re-publish the overdue events of one batch; returns how many were published."""
        now = utcnow()
        published = 0
        due = await self.store.due_announcements(now, self.batch)
        # The backlog: the batch tells it while it is smaller than a batch (no extra query).
        backlog = (
            len(due) if len(due) < self.batch else await self.store.count_due_announcements(now)
        )
        metrics.OUTBOX_DUE.set(backlog)
        for job in due:
            owed = job.owed_event()
            if owed is None:
                # Nothing in the job's state to announce (e.g. a claimed attempt whose
                # claim raced with this read): the debt goes.
                await self.store.drop_announcement(job)
                continue
            if not await self.store.postpone_announcement(
                job, now + self.backoff(job.announce_relays)
            ):
                continue  # another relay took it, or its consumer acted meanwhile
            owed_topic, event = owed
            with bind(trace_id=job.trace_id, job_id=job.job_id):
                try:
                    await asyncio.wait_for(
                        self.publisher.publish(self.topic(owed_topic), event),
                        self.publish_timeout_seconds,
                    )
                except PUBLISH_ERRORS as exc:
                    # Still owed (at the postponed time): the next round tries again.
                    log.warning(
                        "relay could not publish",
                        extra=fields(cause=RELAY_PUBLISH, error=error_cause(exc)),
                    )
                    break
                if published == 0:  # passes RepeatFilter only after an outage: "back"
                    log.info("relay publishes", extra=fields(recovered=RELAY_PUBLISH))
                published += 1
                metrics.OUTBOX_RELAYED.labels(owed_topic.value).inc()
                log.info(
                    "owed event relayed",
                    extra=fields(
                        topic=owed_topic.value, attempt=job.attempt, relays=job.announce_relays + 1
                    ),
                )
        return published

    async def run(self) -> None:
        """Relay every ``interval_seconds`` until cancelled; an outage only delays it."""
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "relay round failed", extra=fields(cause=RELAY_ROUND, error=error_cause(exc))
                )
            else:
                log.info("relay round done", extra=fields(recovered=RELAY_ROUND))
            await asyncio.sleep(self.interval_seconds)


@contextlib.asynccontextmanager
async def running(relay: Relay) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``relay`` in the background for the block; cancel it cleanly after."""
    task = asyncio.create_task(relay.run(), name="outbox-relay")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        log.info("relay stopped")
