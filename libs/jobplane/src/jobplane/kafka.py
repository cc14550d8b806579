"""Kafka wiring every service shares: producers, consumers and the at-least-once loop.

The loop commits an offset only after the handler's effect is durable, so a crash means a
replay, never a loss; handlers make replays harmless by guarding every state change.
An event that cannot be decoded is not retried forever: it goes to ``job.dead`` with the
reason, and the loop moves on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError as KafkaError  # what the services catch

from jobplane import codec
from jobplane.config import CommonSettings
from jobplane.events import Event, Failure, FailureKind, JobDead
from jobplane.logs import TRACE_HEADER, bind, fields, new_trace_id
from jobplane.topics import Topics

log = logging.getLogger(__name__)

Record: TypeAlias = "ConsumerRecord[bytes, bytes]"
Handler = Callable[[Event, Record], Awaitable[None]]

# How long a failing handler waits before it tries the same event again, at most.
MAX_HANDLER_BACKOFF_S = 30.0
# How long a stopping loop (or a partition moving away) lets events in hand finish. What is
# still running then is cancelled, uncommitted, and handled again by whoever consumes next.
DRAIN_TIMEOUT_S = 10.0


class PermanentError(Exception):
    """The event can never be handled (its content is wrong): it goes to ``job.dead``."""


def make_producer(settings: CommonSettings, client_id: str) -> AIOKafkaProducer:
    # Idempotence makes the broker drop the duplicates our own send retries would cause.
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=2,
        request_timeout_ms=30_000,
    )


def make_consumer(settings: CommonSettings, group_id: str) -> AIOKafkaConsumer:
    """A consumer of ``group_id`` that commits by hand; subscribe it to topics after."""
    return AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group_id,
        client_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_poll_records=500,
        # A dispatch may hold an event for a while; the group must not evict us meanwhile.
        max_poll_interval_ms=600_000,
    )


class Publisher:
    """Sends events keyed by job id, with the trace id in a header; waits for the ack."""

    def __init__(self, producer: AIOKafkaProducer, topics: Topics) -> None:
        self.producer = producer
        self.topics = topics

    async def publish(self, topic: str, event: Event) -> None:
        await self.producer.send_and_wait(
            topic,
            key=event.job_id.encode(),
            value=codec.encode(event),
            headers=[(TRACE_HEADER, event.trace_id.encode())],
        )
        log.info("published", extra=fields(topic=topic, event=type(event).__name__))

    async def dead_letter(self, record: Record, reason: str) -> None:
        """Send an event nobody can handle to ``job.dead``, with the reason and its bytes."""
        trace_id = header(record, TRACE_HEADER) or new_trace_id()
        job_id = record.key.decode(errors="replace") if record.key else ""
        dead = JobDead(
            job_id=job_id,
            app_id="",
            user_id="",
            attempt=1,  # unknown: the event could not be read
            trace_id=trace_id,
            job_type="",
            reason=reason,
            failure=Failure(kind=FailureKind.UNDECODABLE, message=reason, retryable=False),
            attempts=(),
            source_topic=record.topic,
            raw_event=record.value,
        )
        await self.publish(self.topics.dead, dead)


def header(record: Record, name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name and isinstance(value, bytes):
            return value.decode(errors="replace")
    return None


@dataclass
class _Offsets:
    """Which offsets of one partition are in flight, so we commit only below all of them."""

    in_flight: set[int] = field(default_factory=set)
    next_offset: int = -1  # one past the highest offset started
    committed: int = -1

    def commit_point(self) -> int:
        return min(self.in_flight) if self.in_flight else self.next_offset


class EventLoop:
    """Consume events and hand each to ``handler``; commit only what is done.

    ``concurrency`` events are handled at once (across partitions and within one); the
    committed offset of a partition never passes an event still being handled.
    """

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        publisher: Publisher,
        expected: Callable[[str], type[Event]],
        handler: Handler,
        *,
        concurrency: int = 1,
    ) -> None:
        self.consumer = consumer
        self.publisher = publisher
        self.expected = expected
        self.handler = handler
        self.slots = asyncio.Semaphore(concurrency)
        self.offsets: dict[TopicPartition, _Offsets] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def rebalance_listener(self) -> ConsumerRebalanceListener:
        return _DrainOnRevoke(self)

    async def run(self) -> None:
        try:
            while True:
                batches = await self.consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    for record in records:
                        await self.slots.acquire()
                        self._start(record)
                await self.commit()
        finally:
            await self.drain()

    def _start(self, record: Record) -> None:
        tp = TopicPartition(record.topic, record.partition)
        offsets = self.offsets.setdefault(tp, _Offsets())
        offsets.in_flight.add(record.offset)
        offsets.next_offset = max(offsets.next_offset, record.offset + 1)
        task = asyncio.create_task(self._handle(record))
        self.tasks.add(task)
        task.add_done_callback(lambda t: self._finished(t, tp, record.offset))

    def _finished(self, task: asyncio.Task[None], tp: TopicPartition, offset: int) -> None:
        self.tasks.discard(task)
        self.offsets[tp].in_flight.discard(offset)
        self.slots.release()

    async def _handle(self, record: Record) -> None:
        with bind(trace_id=header(record, TRACE_HEADER)):
            try:
                event = codec.decode(record.value or b"", self.expected(record.topic))
            except codec.DecodeError as exc:
                reason = str(exc)
                log.error("undecodable event", extra=fields(topic=record.topic, reason=reason))
                await self._retry_until_done(lambda: self.publisher.dead_letter(record, reason))
                return
            with bind(trace_id=event.trace_id, job_id=event.job_id):
                try:
                    await self._retry_until_done(lambda: self.handler(event, record))
                except PermanentError as exc:
                    reason = str(exc)
                    log.error("event cannot be handled", extra=fields(reason=reason))
                    await self._retry_until_done(lambda: self.publisher.dead_letter(record, reason))

    @staticmethod
    async def _retry_until_done(step: Callable[[], Awaitable[None]]) -> None:
        """Run ``step`` until it succeeds: an outage delays an event but never skips it."""
        delay = 0.2
        while True:
            try:
                await step()
                return
            except PermanentError:
                raise
            except Exception:
                log.exception("handling failed; will try again", extra=fields(retry_in_s=delay))
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_HANDLER_BACKOFF_S)

    async def commit(self, only: set[TopicPartition] | None = None) -> None:
        assigned = self.consumer.assignment()
        to_commit = {
            tp: offsets.commit_point()
            for tp, offsets in self.offsets.items()
            if tp in assigned
            and (only is None or tp in only)
            and offsets.commit_point() > offsets.committed
        }
        if not to_commit:
            return
        await self.consumer.commit(to_commit)
        for tp, offset in to_commit.items():
            self.offsets[tp].committed = offset

    async def drain(self) -> None:
        if not self.tasks:
            return
        _, stuck = await asyncio.wait(set(self.tasks), timeout=DRAIN_TIMEOUT_S)
        for task in stuck:
            task.cancel()
        await asyncio.gather(*stuck, return_exceptions=True)


class _DrainOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Before a partition moves to another instance, finish and commit its events."""

    def __init__(self, loop: EventLoop) -> None:
        self.loop = loop

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.loop.drain()
        await self.loop.commit(set(revoked))
        for tp in revoked:
            self.loop.offsets.pop(tp, None)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        pass
