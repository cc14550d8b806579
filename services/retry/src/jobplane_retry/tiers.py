"""The delay tiers: hold each ``job.retry.N`` event until it is due, then request the retry.

One consumer reads all five tier topics. Per partition, events are handled in offset order;
an event that is not due yet stops its partition: the consumer seeks back to it and pauses
the partition until the due time, while every other partition goes on. The due time of
the earliest paused partition bounds how long a poll may wait, so a resume is on time.
An offset is committed only after the ``job.requested`` event it led to is acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from jobplane import codec
from jobplane.events import JobRequested, JobRetryScheduled, utc_now
from jobplane.kafka import Publisher, Record, header
from jobplane.logs import TRACE_HEADER, bind, fields
from jobplane.topics import Topics

log = logging.getLogger(__name__)

# Longest wait for new events when no paused partition is due sooner.
MAX_POLL_S = 1.0
# Back-off of a partition whose publish failed: doubles from the first to the last value.
PUBLISH_BACKOFF_S = (0.5, 10.0)


class TierLoop:
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        publisher: Publisher,
        topics: Topics,
        *,
        clock: Callable[[], datetime] = utc_now,
        max_poll_s: float = MAX_POLL_S,
    ) -> None:
        self.consumer = consumer
        self.publisher = publisher
        self.topics = topics
        self.clock = clock
        self.max_poll_s = max_poll_s
        self.paused: dict[TopicPartition, datetime] = {}  # partition -> when to resume it
        self._failures: dict[TopicPartition, int] = {}  # consecutive publish failures
        self._commit_lock = asyncio.Lock()

    def rebalance_listener(self) -> ConsumerRebalanceListener:
        return _ForgetRevoked(self)

    async def run(self) -> None:
        """Until cancelled."""
        while True:
            self.resume_due()
            batches = await self.consumer.getmany(timeout_ms=self.poll_timeout_ms())
            if batches:
                # Partitions are independent: one partition's publishes never wait for another's.
                await asyncio.gather(*(self.process(tp, recs) for tp, recs in batches.items()))

    def poll_timeout_ms(self) -> int:
        wait = self.max_poll_s
        if self.paused:
            until_first = (min(self.paused.values()) - self.clock()).total_seconds()
            wait = max(0.0, min(wait, until_first))
        return math.ceil(wait * 1000)

    def resume_due(self) -> None:
        now = self.clock()
        due = [tp for tp, at in self.paused.items() if at <= now]
        for tp in due:
            del self.paused[tp]
            if tp in self.consumer.assignment():
                self.consumer.resume(tp)
        if due:
            log.debug("partitions resumed", extra=fields(partitions=[str(tp) for tp in due]))

    def forget(self, partitions: Sequence[TopicPartition]) -> None:
        for tp in partitions:
            self.paused.pop(tp, None)
            self._failures.pop(tp, None)

    async def process(self, tp: TopicPartition, records: list[Record]) -> None:
        """Handle one partition's records in offset order; stop at the first not due yet."""
        for record in records:
            if tp in self.paused or tp not in self.consumer.assignment():
                return  # held meanwhile, or revoked: the rest comes again later
            with bind(trace_id=header(record, TRACE_HEADER)):
                if not await self._handle(tp, record):
                    return

    async def _handle(self, tp: TopicPartition, record: Record) -> bool:
        """True if the record is done (and committed), False if the partition is on hold."""
        try:
            event = codec.decode(record.value or b"", JobRetryScheduled)
        except codec.DecodeError as exc:
            log.error("undecodable event", extra=fields(topic=record.topic, reason=exc.reason))
            try:
                await self.publisher.dead_letter(record, exc.reason)
            except Exception:
                log.exception("cannot dead-letter the event; will try again")
                self._back_off(tp, record.offset)
                return False
            await self._commit(tp, record.offset + 1)
            return True

        with bind(trace_id=event.trace_id, job_id=event.job_id):
            if event.due_at > self.clock():
                self._hold(tp, record.offset, event.due_at)
                return False
            retry = JobRequested(
                job_id=event.job_id,
                app_id=event.app_id,
                user_id=event.user_id,
                attempt=event.attempt + 1,
                trace_id=event.trace_id,
                job_type=event.job_type,
                payload=event.payload,
                timeout_seconds=event.timeout_seconds,
            )
            try:
                await self.publisher.publish(self.topics.requested, retry)
            except Exception:
                log.exception("cannot request the retry; will try again")
                self._back_off(tp, record.offset)
                return False
            self._failures.pop(tp, None)
            log.info(
                "retry requested",
                extra=fields(
                    attempt=retry.attempt,
                    retry_number=event.retry_number,
                    due_at=event.due_at.isoformat(),
                    late_ms=round((self.clock() - event.due_at).total_seconds() * 1000),
                ),
            )
            await self._commit(tp, record.offset + 1)
            return True

    def _hold(self, tp: TopicPartition, offset: int, until: datetime) -> None:
        """Read ``offset`` of ``tp`` again at ``until``, and nothing of ``tp`` before then."""
        if tp not in self.consumer.assignment():
            return
        self.consumer.seek(tp, offset)
        self.consumer.pause(tp)
        self.paused[tp] = until

    def _back_off(self, tp: TopicPartition, offset: int) -> None:
        failures = self._failures.get(tp, 0)
        self._failures[tp] = failures + 1
        first, last = PUBLISH_BACKOFF_S
        delay = min(first * 2**failures, last)
        self._hold(tp, offset, self.clock() + timedelta(seconds=delay))

    async def _commit(self, tp: TopicPartition, offset: int) -> None:
        if tp not in self.consumer.assignment():
            return
        try:
            async with self._commit_lock:
                await self.consumer.commit({tp: offset})
        except Exception:
            # The event was published: at worst it is published again after a restart or a
            # rebalance, and the dispatcher ignores an attempt it has claimed already.
            log.warning("commit failed", exc_info=True, extra=fields(partition=str(tp)))


class _ForgetRevoked(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, loop: TierLoop) -> None:
        self.loop = loop

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.loop.forget(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        # A newly assigned partition starts unpaused at its committed offset.
        self.loop.forget([tp for tp in self.loop.paused if tp not in set(assigned)])
        self.loop.forget(assigned)


async def run_tiers(consumer: AIOKafkaConsumer, publisher: Publisher, topics: Topics) -> None:
    """Subscribe ``consumer`` (not started yet) to every tier topic and run until cancelled."""
    loop = TierLoop(consumer, publisher, topics)
    consumer.subscribe(topics.retries, listener=loop.rebalance_listener())
    await consumer.start()
    try:
        await loop.run()
    finally:
        await consumer.stop()
