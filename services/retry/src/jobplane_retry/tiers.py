"""The delay tiers: hold each ``job.retry.N`` event until it is due, then request the retry.

A retry is requested ``release_lead`` before its due time, as a ``job.requested`` whose
``not_before`` is the due time: the dispatcher calls the backend at that instant, never
before. The transaction that requests it, which takes hundreds of milliseconds on a busy
machine, then happens before the due time instead of making the retry late.

One consumer reads all five tier topics. Each event is held in memory with a timer at its
own release time (asyncio's monotonic clock; when the timer fires, the wall clock is checked
again and the timer re-armed if it is still early, so a retry is never requested before
``due_at - release_lead``). Events of one partition are independent (one job has one retry
pending at a time), so a later event never waits behind an earlier one with more jitter, and
nothing is fetched twice: no seek, no pause per due time. Memory is bounded: a partition holding
``tier_max_held_per_partition`` events is paused until half of them are out.

Due events are published in batches, each one Kafka transaction (consume-transform-produce):
the ``job.requested`` events (and ``job.dead`` for undecodable ones) plus the consumer
group's offsets, committed with ``send_offsets_to_transaction``. A crash, or a partition
moving to another instance, leaves either both or neither, so a retry is requested once.
The committed offset of a partition is its first event still held, and its metadata lists
the later events requested already (events leave by due time, not offset order): after a
restart or a rebalance the new owner holds the events from the committed offset again and
skips those listed, so each retry is requested once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from jobplane import codec, tracing
from jobplane.events import Event, JobRequested, JobRetryScheduled, utc_now
from jobplane.kafka import (
    AsyncConsumer,
    KafkaError,
    Record,
    TopicPartition,
    bound_backlog,
    dead_letter_event,
    error_cause,
    header,
    make_consumer,
    producer_config,
)
from jobplane.kafka_client import OutMessage, TransactionalProducer, committed_metadata
from jobplane.logs import TRACE_HEADER, bind, fields
from jobplane.topics import Topics

from jobplane_retry.config import Settings

log = logging.getLogger(__name__)

# Events put in one transaction at most.
MAX_BATCH = 500
# Back-off after a failed transaction: doubles from the first to the last value.
PUBLISH_BACKOFF_S = (0.2, 10.0)
MAX_FETCH = 500
# How long a revocation waits for the transaction under way. Not longer: that transaction
# may itself wait for the rebalance to finish (its offsets belong to the group's generation),
# and the rebalance waits for this callback — after a Kafka outage the two held each other
# for minutes. Past the bound the partitions are dropped anyway: the transaction commits
# (its retries are requested) or aborts (the next owner requests them); a retry requested
# twice is one duplicate job.requested, which the dispatcher's claim turns into a no-op.
REVOKE_WAIT_S = 5.0


@dataclass
class _Partition:
    held: dict[int, asyncio.TimerHandle] = field(default_factory=dict)
    in_flight: set[int] = field(default_factory=set)  # held or due, not yet committed
    # Offsets at or above the commit point already requested in a committed transaction:
    # kept in the committed offset's metadata, so that a new owner does not request them
    # again (events of one partition are released out of offset order, by due time).
    done: set[int] = field(default_factory=set)
    next_offset: int = -1
    committed: int = -1
    paused: bool = False

    def commit_point(self, finishing: set[int]) -> int:
        left = self.in_flight - finishing
        return min(left) if left else self.next_offset

    def commit(self, finishing: set[int]) -> tuple[int, str]:
        """Offset and metadata to commit once ``finishing`` is done too."""
        point = self.commit_point(finishing)
        return point, encode_done(o for o in self.done | finishing if o >= point)


# Kafka keeps at most 4096 bytes of metadata per committed offset (offset.metadata.max.bytes);
# offsets that do not fit are left out, and requested again by a new owner (harmless).
_MAX_METADATA = 3000


def encode_done(offsets: Iterable[int]) -> str:
    """``"done:5,7-9"``: offsets as ranges."""
    ranges: list[str] = []
    length = 5
    for first, last in _runs(sorted(offsets)):
        text = str(first) if first == last else f"{first}-{last}"
        length += len(text) + 1
        if length > _MAX_METADATA:
            break
        ranges.append(text)
    return "done:" + ",".join(ranges)


def decode_done(metadata: str) -> set[int]:
    if not metadata.startswith("done:"):
        return set()
    offsets: set[int] = set()
    for part in metadata[5:].split(","):
        if part:
            first, _, last = part.partition("-")
            offsets.update(range(int(first), int(last or first) + 1))
    return offsets


def _runs(offsets: list[int]) -> Iterator[tuple[int, int]]:
    start = previous = None
    for offset in offsets:
        if previous is not None and offset == previous + 1:
            previous = offset
            continue
        if start is not None and previous is not None:
            yield start, previous
        start = previous = offset
    if start is not None and previous is not None:
        yield start, previous


@dataclass(frozen=True, slots=True)
class _Due:
    tp: TopicPartition
    offset: int
    message: OutMessage
    due_at: datetime | None  # None: a dead letter
    event: Event


class TierLoop:
    def __init__(
        self,
        consumer: AsyncConsumer,
        producer: TransactionalProducer,
        topics: Topics,
        *,
        clock: Callable[[], datetime] = utc_now,
        max_held_per_partition: int = 2000,
        release_lead: timedelta = timedelta(0),
    ) -> None:
        self.consumer = consumer
        self.producer = producer
        self.topics = topics
        self.clock = clock
        self.release_lead = release_lead
        self.max_held = max_held_per_partition
        self.partitions: dict[TopicPartition, _Partition] = {}
        self.due: list[_Due] = []
        self._due_signal = asyncio.Event()
        self._transaction = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def run(self) -> None:
        """Until cancelled; then leave the group (held events are replayed by the next owner)."""
        self._loop = asyncio.get_running_loop()
        await self.consumer.start(
            self.topics.retries, on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._intake())
                tasks.create_task(self._publish())
        finally:
            self._forget(list(self.partitions))
            await self.consumer.close()

    # -- intake --------------------------------------------------------------------------

    async def _intake(self) -> None:
        while True:
            await self._pause_or_resume()
            for record in await self.consumer.fetch(MAX_FETCH):
                self._take(record)

    def _take(self, record: Record) -> None:
        partition = self.partitions.setdefault(record.tp, _Partition())
        if record.offset < partition.next_offset:
            return  # fetched again after a rebalance kept the partition: held already
        partition.next_offset = record.offset + 1
        if record.offset in partition.done:
            return  # requested by the previous owner, after its commit point
        partition.in_flight.add(record.offset)
        with bind(trace_id=header(record, TRACE_HEADER)):
            try:
                event = codec.decode(record.value or b"", JobRetryScheduled)
            except codec.DecodeError as exc:
                log.error("undecodable event", extra=fields(topic=record.topic, reason=exc.reason))
                dead = dead_letter_event(record, exc.reason)
                self._make_due(record.tp, record.offset, self.topics.dead, dead, None)
                return
        # Only while tracing is on: the span that scheduled the retry, parent of its release.
        traceparent = header(record, tracing.TRACEPARENT) if tracing.is_enabled() else None
        self._hold(record.tp, record.offset, event, traceparent)

    def _hold(
        self,
        tp: TopicPartition,
        offset: int,
        event: JobRetryScheduled,
        traceparent: str | None = None,
    ) -> None:
        assert self._loop is not None
        wait_s = (self._release_at(event.due_at) - self.clock()).total_seconds()
        if wait_s <= 0:
            self._release(tp, offset, event, traceparent)
            return
        handle = self._loop.call_later(wait_s, self._release, tp, offset, event, traceparent)
        self.partitions[tp].held[offset] = handle

    def _release_at(self, due_at: datetime) -> datetime:
        """When a retry due at ``due_at`` is requested (its ``not_before`` is ``due_at``)."""
        return due_at - self.release_lead

    def _release(
        self,
        tp: TopicPartition,
        offset: int,
        event: JobRetryScheduled,
        traceparent: str | None = None,
    ) -> None:
        """The timer fired: request the retry, unless the wall clock says it is early."""
        partition = self.partitions.get(tp)
        if partition is None:
            return  # revoked meanwhile
        partition.held.pop(offset, None)
        if self.clock() < self._release_at(event.due_at):
            self._hold(tp, offset, event, traceparent)  # never early, even if clocks drift
            return
        retry = JobRequested(
            **event.envelope.fields(attempt=event.attempt + 1),
            payload=event.payload,
            timeout_seconds=event.timeout_seconds,
            not_before=event.due_at,
        )
        with tracing.span(
            f"release {tp.topic}",
            event.trace_id,
            kind=tracing.SpanKind.CONSUMER,
            traceparent=traceparent,
            attributes={"jobplane.job_id": event.job_id, "jobplane.attempt": event.attempt},
        ):
            self._make_due(tp, offset, self.topics.requested, retry, event.due_at)

    def _make_due(
        self, tp: TopicPartition, offset: int, topic: str, event: Event, due_at: datetime | None
    ) -> None:
        message = OutMessage(
            topic=topic,
            value=codec.encode(event),
            key=event.job_id.encode(),
            headers=(
                (TRACE_HEADER, event.trace_id.encode()),
                *tracing.kafka_headers(topic, event.trace_id, event.job_id, event.attempt),
            ),
        )
        self.due.append(_Due(tp, offset, message, due_at, event))
        self._due_signal.set()

    async def _pause_or_resume(self) -> None:
        await bound_backlog(
            self.consumer,
            self.partitions,
            lambda partition: len(partition.held),
            self.max_held,
            cause="retries held until due",
        )

    # -- publishing ------------------------------------------------------------------------

    async def _publish(self) -> None:
        failures = 0
        cause = ""
        while True:
            await self._due_signal.wait()
            self._due_signal.clear()
            while self.due:
                batch = self.due[:MAX_BATCH]
                try:
                    await self._commit(batch)
                except Exception as exc:  # an aborted transaction: nothing of it happened
                    first, last = PUBLISH_BACKOFF_S
                    delay = min(first * 2**failures, last)
                    failures += 1
                    cause = error_cause(exc)
                    log.warning(
                        "cannot request the retries; will try again",
                        extra=fields(
                            cause=cause, error=str(exc), retry_in_s=delay,
                            events=len(batch),
                        ),
                    )  # fmt: skip
                    await asyncio.sleep(delay)
                    continue
                if failures:
                    log.info(
                        "requesting retries works again",
                        extra=fields(recovered=cause, failed_times=failures),
                    )
                    failures = 0

    async def _commit(self, batch: list[_Due]) -> None:
        async with self._transaction:
            taken = {(d.tp, d.offset) for d in batch}
            batch = [d for d in batch if d.tp in self.partitions]  # not revoked meanwhile
            done: dict[TopicPartition, set[int]] = {}
            for d in batch:
                done.setdefault(d.tp, set()).add(d.offset)
            offsets = {tp: self.partitions[tp].commit(finishing) for tp, finishing in done.items()}
            await self.producer.commit(
                [d.message for d in batch], offsets, self.consumer.group_metadata
            )
            now = self.clock()
            for tp, finishing in done.items():
                partition = self.partitions.get(tp)
                if partition is not None:
                    point = offsets[tp][0]
                    partition.in_flight -= finishing
                    partition.done = {o for o in partition.done | finishing if o >= point}
                    partition.committed = point
            self.due = [d for d in self.due if (d.tp, d.offset) not in taken]
        for d in batch:
            if d.due_at is not None:
                with bind(trace_id=d.event.trace_id, job_id=d.event.job_id):
                    log.info(
                        "retry requested",
                        extra=fields(
                            attempt=d.event.attempt,
                            due_at=d.due_at.isoformat(),
                            # Against the release time: the backend is called at due_at.
                            late_ms=round(
                                (now - self._release_at(d.due_at)).total_seconds() * 1000
                            ),
                        ),
                    )

    # -- rebalancing -----------------------------------------------------------------------

    def _on_assign(self, partitions: list[TopicPartition]) -> None:
        """On the consumer's thread: learn which events after each committed offset the
        previous owner requested already (the committed metadata)."""
        assert self._loop is not None
        try:
            committed = committed_metadata(self.consumer.consumer, partitions)
        except KafkaError as exc:
            log.warning(
                "cannot read the committed offsets; some retries may be requested twice",
                extra=fields(cause=error_cause(exc), error=str(exc)),
            )
            return

        def restore() -> None:
            for tp, (_offset, metadata) in committed.items():
                done = decode_done(metadata)
                if done:
                    self.partitions.setdefault(tp, _Partition()).done = done

        # Runs before the records of the fetch under way are taken (call order is kept).
        self._loop.call_soon_threadsafe(restore)

    def _on_revoke(self, partitions: list[TopicPartition]) -> None:
        """On the consumer's thread: finish the transaction under way, then drop what is
        held for ``partitions`` (their next owner reads it again from the committed offset)."""
        assert self._loop is not None

        async def revoke() -> None:
            try:
                await asyncio.wait_for(self._transaction.acquire(), REVOKE_WAIT_S)
            except TimeoutError:
                log.warning(
                    "partitions revoked during a transaction; not waiting for it",
                    extra=fields(partitions=[str(tp) for tp in partitions]),
                )
                self._forget(partitions)
                return
            try:
                self._forget(partitions)
            finally:
                self._transaction.release()

        asyncio.run_coroutine_threadsafe(revoke(), self._loop).result()

    def _forget(self, partitions: list[TopicPartition]) -> None:
        gone = set(partitions)
        for tp in gone:
            partition = self.partitions.pop(tp, None)
            if partition is not None:
                for handle in partition.held.values():
                    handle.cancel()
        self.due = [d for d in self.due if d.tp not in gone]


def tier_producer(settings: Settings) -> TransactionalProducer:
    """The tiers' transactional producer. Its id is new for every process: with the
    consumer group's metadata sent in each transaction, the broker fences a zombie by the
    group's generation (KIP-447), so the id need not be stable."""
    config = producer_config(settings, f"{settings.tiers_group_id}-producer")
    config["transactional.id"] = f"{settings.tiers_group_id}-{uuid.uuid4().hex[:12]}"
    # Bounds how long a process that died inside a transaction holds the partitions it wrote
    # to (see the setting). librdkafka refuses a message timeout longer than the transaction's.
    timeout_ms = int(settings.tiers_transaction_timeout_seconds * 1000)
    config["transaction.timeout.ms"] = timeout_ms
    config["delivery.timeout.ms"] = min(config["delivery.timeout.ms"], timeout_ms)
    # Right after a commit the broker answers the next transaction's first request with
    # CONCURRENT_TRANSACTIONS until its markers are written; librdkafka retries after
    # retry.backoff.ms (100 ms by default): measured 104 ms per transaction, 12 ms with 10.
    config["retry.backoff.ms"] = 10
    config["retry.backoff.max.ms"] = 100
    return TransactionalProducer(config, settings.kafka_delivery_timeout_seconds)


async def run_tiers(settings: Settings, topics: Topics) -> None:
    """Run the tiers (their own consumer and transactional producer) until cancelled."""
    producer = tier_producer(settings)
    await producer.start()
    try:
        loop = TierLoop(
            make_consumer(settings, settings.tiers_group_id),
            producer,
            topics,
            max_held_per_partition=settings.tier_max_held_per_partition,
            release_lead=timedelta(seconds=settings.release_lead_seconds),
        )
        await loop.run()
    finally:
        await producer.stop()
