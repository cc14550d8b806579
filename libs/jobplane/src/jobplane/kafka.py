"""Kafka wiring every service shares: producers, consumers and the at-least-once loop.

The client is librdkafka (confluent-kafka), driven from asyncio by ``jobplane.kafka_client``
(the classic client with a delivery-report thread and a consumer thread; that module says why
not ``confluent_kafka.aio``). Producers are idempotent (``enable.idempotence``, ``acks=all``);
consumers read committed events only (``isolation.level=read_committed``) and commit by hand.

Measured with ``uv run python -m jobplane.kafka_floor`` (20,000 events of 400 bytes, one
partition, local broker, 2-core machine shared with other work; messages/s, 2-3 runs), against
the aiokafka 0.14 client this module replaced, with its settings (linger 2 ms) and the same
procedure:

=====================================  =================  ===================
messages/s                             aiokafka (before)  this module
=====================================  =================  ===================
produce all, then await the acks       22,500 to 31,300   69,000 to 96,700
32 publishers, each awaiting its ack   7,750 to 8,300     12,900 to 25,400
consume in a group, commit per fetch   65,200 to 67,200   198,000 to 246,000
=====================================  =================  ===================

(aiokafka's commits were awaited; ours are handed to librdkafka without waiting, as the
loop's periodic commits are: awaited, they measured 54,000/s, ~6 ms per commit.)

The loop (:class:`EventLoop`) commits an offset only after the handler's effect is durable,
so a crash means a replay, never a loss; handlers make replays harmless by guarding every
state change. No event can block the others:

- a handler's :class:`PermanentError`, or an event that cannot be decoded, goes to
  ``job.dead`` with the reason;
- a transient failure (:func:`is_transient`: the store, Kafka or SMTP away, a timeout) is
  retried with backoff for ever, *without* holding a concurrency slot while it waits, so the
  partition's other events keep flowing (the committed offset cannot pass it, which is
  right: it is not done);
- any other exception (a bug, a value a library refuses) is tried ``handler_max_attempts``
  times in all, then treated as permanent.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

import confluent_kafka
from pymongo.errors import AutoReconnect, ConnectionFailure, NetworkTimeout

from jobplane import codec, metrics, tracing
from jobplane.config import CommonSettings
from jobplane.events import Envelope, Event, Failure, FailureKind, JobDead, utc_now
from jobplane.kafka_client import (
    AsyncConsumer,
    AsyncProducer,
    KafkaError,
    Record,
    TopicPartition,
    commit_now,
)
from jobplane.logs import TRACE_HEADER, bind, fields, new_trace_id
from jobplane.topics import Topics

__all__ = [
    "AsyncConsumer",
    "AsyncProducer",
    "EventLoop",
    "Handler",
    "KafkaError",
    "PermanentError",
    "Publisher",
    "Record",
    "TopicPartition",
    "error_cause",
    "header",
    "is_transient",
    "make_consumer",
    "make_producer",
]

log = logging.getLogger(__name__)

Handler = Callable[[Event, Record], Awaitable[None]]

# First wait before a failed step is tried again; it doubles up to handler_max_backoff.
FIRST_BACKOFF_S = 0.2
# Offsets of finished events are committed in batches, at most this often while busy.
COMMIT_INTERVAL_S = 0.5
# Records taken from librdkafka's buffer per fetch.
MAX_FETCH = 500


class PermanentError(Exception):
    """The event can never be handled (its content is wrong): it goes to ``job.dead``."""


# librdkafka errors that go away when the cluster is back (the producer's own retries gave up).
_TRANSIENT_KAFKA_CODES = frozenset(
    getattr(confluent_kafka.KafkaError, name)
    for name in (
        "_MSG_TIMED_OUT", "_TIMED_OUT", "_TRANSPORT", "_ALL_BROKERS_DOWN", "_RESOLVE",
        "_WAIT_COORD", "_UNKNOWN_PARTITION", "_UNKNOWN_TOPIC", "_STATE", "_DESTROY",
        "_PURGE_QUEUE", "_PURGE_INFLIGHT", "_NOENT", "REQUEST_TIMED_OUT", "NETWORK_EXCEPTION",
        "NOT_ENOUGH_REPLICAS", "NOT_ENOUGH_REPLICAS_AFTER_APPEND", "LEADER_NOT_AVAILABLE",
        "NOT_LEADER_FOR_PARTITION", "UNKNOWN_TOPIC_OR_PART", "COORDINATOR_NOT_AVAILABLE",
        "NOT_COORDINATOR", "COORDINATOR_LOAD_IN_PROGRESS", "BROKER_NOT_AVAILABLE",
    )
)  # fmt: skip


_NETWORK_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT,
        errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.EHOSTDOWN, errno.EPIPE,
    }
)  # fmt: skip


def is_transient(exc: BaseException, extra: tuple[type[BaseException], ...] = ()) -> bool:
    """True for a failure that goes away by itself: a dependency away or slow.

    ``extra``: more exception types a service knows to be transient.
    """
    if isinstance(exc, extra):
        return True
    if isinstance(exc, ConnectionFailure | AutoReconnect | NetworkTimeout):
        return True  # PyMongo's ServerSelectionTimeoutError is a ConnectionFailure
    if isinstance(exc, ConnectionError | TimeoutError | socket.gaierror):
        return True
    if isinstance(exc, OSError) and exc.errno in _NETWORK_ERRNOS:
        return True  # (not any OSError: a missing file or a permission does not come back)
    if isinstance(exc, confluent_kafka.KafkaException):
        error = exc.args[0] if exc.args else None
        if isinstance(error, confluent_kafka.KafkaError):
            return not error.fatal() and (
                error.retriable() or error.code() in _TRANSIENT_KAFKA_CODES
            )
        return False
    smtp = sys.modules.get("aiosmtplib")  # only a service that sends mail has it loaded
    if smtp is not None:
        if isinstance(exc, smtp.SMTPConnectError | smtp.SMTPServerDisconnected):
            return True
        if isinstance(exc, smtp.SMTPTimeoutError):
            return True
        if isinstance(exc, smtp.SMTPResponseException):
            # 4xx: "try again later" (421 busy / closing, 450-452 mailbox or storage busy).
            return 400 <= int(exc.code) < 500
    return False


def error_cause(exc: BaseException) -> str:
    """A short stable name of what failed, for logs that are rate-limited per cause."""
    if isinstance(exc, confluent_kafka.KafkaException) and exc.args:
        error = exc.args[0]
        if isinstance(error, confluent_kafka.KafkaError):
            return f"kafka:{error.name()}"
    return f"{type(exc).__module__}.{type(exc).__qualname__}"


def producer_config(settings: CommonSettings, client_id: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "client.id": client_id,
        # Idempotence makes the broker drop the duplicates our own send retries would cause.
        "enable.idempotence": True,
        "acks": "all",
        # A few milliseconds of waiting fill each request with the events of many jobs: each
        # request costs the broker and librdkafka CPU, and the wait is small beside a job's.
        "linger.ms": settings.kafka_linger_ms,
        "delivery.timeout.ms": int(settings.kafka_delivery_timeout_seconds * 1000),
    }


def consumer_config(settings: CommonSettings, group_id: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "group.id": group_id,
        "client.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        # A partition moving between instances is drained alone; the others keep going.
        "partition.assignment.strategy": "cooperative-sticky",
        # A dispatch may hold an event for a while; the group must not evict us meanwhile.
        "max.poll.interval.ms": 600_000,
        # A member that died frees its partitions after this (see the setting); librdkafka
        # heartbeats from its own thread, so a busy event loop does not count against it.
        "session.timeout.ms": int(settings.kafka_session_timeout_seconds * 1000),
        # Kafka's default (3 s, at most a third of the session). A member hears of a
        # rebalance in its next heartbeat, and the group waits for every member: with a fifth
        # of the session (9 s), a second dispatcher joining paused consumption for ~6 s.
        "heartbeat.interval.ms": min(3000, int(settings.kafka_session_timeout_seconds * 1000 / 3)),
        # The lag per partition, when the process exports metrics (jobplane.metrics).
        **metrics.consumer_statistics(group_id, settings.consumer_lag_interval_seconds),
    }


def make_producer(settings: CommonSettings, client_id: str) -> AsyncProducer:
    """An idempotent producer; ``await producer.start()`` before use, ``stop()`` after."""
    return AsyncProducer(producer_config(settings, client_id))


def make_consumer(settings: CommonSettings, group_id: str) -> AsyncConsumer:
    """A consumer of ``group_id`` that commits by hand; an EventLoop starts it."""
    return AsyncConsumer(consumer_config(settings, group_id))


class Publisher:
    """Sends events keyed by job id, with the trace id in a header."""

    def __init__(self, producer: AsyncProducer, topics: Topics) -> None:
        self.producer = producer
        self.topics = topics

    async def send(
        self,
        topic: str,
        event: Event,
        encoded: bytes | None = None,
        *,
        wait_for_room: bool = True,
    ) -> asyncio.Future[None]:
        """Enqueue ``event`` (``encoded``: its Avro bytes, when the caller has them already);
        the future resolves on Kafka's ack. Send many, then await. ``wait_for_room``: see
        ``AsyncProducer.send``."""
        return await self.producer.send(
            topic,
            codec.encode(event) if encoded is None else encoded,
            key=event.job_id.encode(),
            headers=[
                (TRACE_HEADER, event.trace_id.encode()),
                # W3C traceparent of a producer span, only while tracing is on.
                *tracing.kafka_headers(topic, event.trace_id, event.job_id, event.attempt),
            ],
            wait_for_room=wait_for_room,
        )

    async def publish(self, topic: str, event: Event, encoded: bytes | None = None) -> None:
        """Send ``event`` and wait for Kafka's ack."""
        await (await self.send(topic, event, encoded))
        # DEBUG: one line per event on the hot path costs CPU, and each service logs what the
        # event was for at INFO already (job accepted, backend called, …).
        log.debug("published", extra=fields(topic=topic, event=type(event).__name__))

    async def dead_letter(self, record: Record, reason: str, event: Event | None = None) -> None:
        """Send an event nobody can handle to ``job.dead``, with the reason and its bytes."""
        await self.publish(self.topics.dead, dead_letter_event(record, reason, event))


def dead_letter_event(record: Record, reason: str, event: Event | None = None) -> JobDead:
    """The ``job.dead`` event for ``record``: undecodable (``event`` None) or refused."""
    kind = FailureKind.UNDECODABLE if event is None else FailureKind.REJECTED
    envelope = (
        event.envelope
        if event
        # Unknown when the event could not be read: the key is the job's id, if anything.
        else Envelope(
            job_id=record.key.decode(errors="replace") if record.key else "",
            app_id="",
            user_id="",
            attempt=1,
            trace_id=header(record, TRACE_HEADER) or new_trace_id(),
            job_type="",
        )
    )
    return JobDead(
        **envelope.fields(),
        reason=reason,
        failure=Failure(kind=kind, message=reason, retryable=False),
        attempts=(),
        source_topic=record.topic,
        raw_event=record.value,
    )


def header(record: Record, name: str) -> str | None:
    for key, value in record.headers:
        if key == name:
            return value.decode(errors="replace")
    return None


class _Pausable(Protocol):
    paused: bool


P = TypeVar("P", bound=_Pausable)


async def bound_backlog(
    consumer: AsyncConsumer,
    partitions: Mapping[TopicPartition, P],
    backlog: Callable[[P], int],
    limit: int,
    *,
    cause: str,
) -> None:
    """Bound memory: pause a partition with ``limit`` or more events held in memory (``cause``
    says which), resume it once half of them are out."""
    to_pause: list[TopicPartition] = []
    to_resume: list[TopicPartition] = []
    for tp, state in partitions.items():
        held = backlog(state)
        if not state.paused and held >= limit:
            state.paused = True
            to_pause.append(tp)
        elif state.paused and held <= limit // 2:
            state.paused = False
            to_resume.append(tp)
    if to_pause:
        log.warning(
            "partitions paused: too many events held",
            extra=fields(cause=f"paused: {cause}", partitions=[str(tp) for tp in to_pause]),
        )
        await consumer.pause(to_pause)
    if to_resume:
        log.info("partitions resumed", extra=fields(partitions=[str(tp) for tp in to_resume]))
        await consumer.resume(to_resume)


@dataclass
class _Offsets:
    """Which offsets of one partition are in flight, so we commit only below all of them."""

    in_flight: set[int] = field(default_factory=set)
    next_offset: int = -1  # one past the highest offset started
    committed: int = -1
    waiting: int = 0  # events of the partition waiting to be tried again
    paused: bool = False

    def commit_point(self) -> int:
        return min(self.in_flight) if self.in_flight else self.next_offset


@dataclass
class _Work:
    """One event in hand: whether it holds a concurrency slot, whether it is backing off."""

    record: Record
    holds_slot: bool = True
    backing_off: bool = False


async def sleep_until(instant: datetime) -> None:
    """Return at ``instant`` by the wall clock, never before (the event loop's timer runs
    on the monotonic clock, which may drift from the wall clock a due time is written in)."""
    # Not an asyncio.Event: nothing sets it, the clock does (ruff's ASYNC110).
    while (left := (instant - utc_now()).total_seconds()) > 0:  # noqa: ASYNC110
        await asyncio.sleep(left)


class EventLoop:
    """Consume events and hand each to ``handler``; commit only what is done.

    ``concurrency`` events are handled at once (across partitions and within one); the
    committed offset of a partition never passes an event still being handled.
    """

    def __init__(
        self,
        consumer: AsyncConsumer,
        publisher: Publisher,
        expected: Callable[[str], type[Event]],
        handler: Handler,
        *,
        concurrency: int = 1,
        settings: CommonSettings | None = None,
        transient: tuple[type[BaseException], ...] = (),
        ordered: bool = False,
        not_before: Callable[[Event], datetime | None] | None = None,
    ) -> None:
        """``ordered``: events with the same key (one job's) are handled one after the
        other, in offset order; events of different keys still run concurrently.
        ``not_before``: the instant before which an event must not be handled (None: at
        once); it waits for it without a concurrency slot."""
        settings = settings or CommonSettings()
        self.ordered = ordered
        self.not_before = not_before
        self._key_tails: dict[bytes, asyncio.Future[None]] = {}
        self.consumer = consumer
        self.publisher = publisher
        self.expected = expected
        self.handler = handler
        self.transient = transient
        self.max_backoff_s = settings.handler_max_backoff_seconds
        self.max_attempts = settings.handler_max_attempts
        self.max_waiting = settings.handler_max_waiting_per_partition
        self.drain_timeout_s = settings.drain_timeout_seconds
        self.slots = asyncio.Semaphore(concurrency)
        self.offsets: dict[TopicPartition, _Offsets] = {}
        # Partitions the group gave us: only theirs are committed (see _on_lost).
        self.assigned: frozenset[TopicPartition] = frozenset()
        self.tasks: dict[asyncio.Task[None], _Work] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_commit = 0.0

    async def run(self, topics: Sequence[str]) -> None:
        """Subscribe to ``topics`` and handle events until cancelled; then stop cleanly:
        no more fetches, events in hand finish (or are cancelled after the drain timeout,
        uncommitted), what is done is committed, and the consumer leaves its group."""
        self._loop = asyncio.get_running_loop()
        await self.consumer.start(
            topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        try:
            while True:
                await self._pause_or_resume()
                records = await self.consumer.fetch(MAX_FETCH)
                for record in records:
                    await self.slots.acquire()
                    self._start(record)
                now = self._loop.time()
                if not records or now - self._last_commit >= COMMIT_INTERVAL_S:
                    self._last_commit = now
                    await self.commit(wait=False)
        finally:
            await self._stop()

    async def _stop(self) -> None:
        try:
            await self.drain()
            try:
                await self.commit(every=True)
            except KafkaError as exc:
                log.warning(
                    "final commit failed; events will be handled again",
                    extra=fields(cause=error_cause(exc), error=str(exc)),
                )
        finally:
            await self.consumer.close()

    def _start(self, record: Record) -> None:
        offsets = self.offsets.setdefault(record.tp, _Offsets())
        offsets.in_flight.add(record.offset)
        offsets.next_offset = max(offsets.next_offset, record.offset + 1)
        work = _Work(record)
        task = asyncio.create_task(self._handle(work))
        self.tasks[task] = work
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        work = self.tasks.pop(task)
        if work.holds_slot:
            self.slots.release()
        offsets = self.offsets.get(work.record.tp)
        # A cancelled event is not done: its offset stays in flight, so it is not committed.
        if task.cancelled():
            return
        if task.exception() is not None:  # a bug of the loop itself: say so, don't wedge
            log.critical(
                "event handling crashed; skipped",
                exc_info=task.exception(),
                extra=fields(topic=work.record.topic, offset=work.record.offset),
            )
        if offsets is not None:
            offsets.in_flight.discard(work.record.offset)

    async def _handle(self, work: _Work) -> None:
        key = work.record.key
        if not self.ordered or key is None:
            await self._handle_event(work)
            return
        # One job's events in offset order: wait (without a slot) for the previous of the key.
        previous = self._key_tails.get(key)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._key_tails[key] = mine
        try:
            if previous is not None and not previous.done():
                await self._wait_without_slot(work, asyncio.shield(previous))
            await self._handle_event(work)
        finally:
            mine.set_result(None)
            if self._key_tails.get(key) is mine:
                del self._key_tails[key]

    async def _handle_event(self, work: _Work) -> None:
        record = work.record
        with bind(trace_id=header(record, TRACE_HEADER)):
            try:
                event = codec.decode(record.value or b"", self.expected(record.topic))
            except codec.DecodeError as exc:
                log.error("undecodable event", extra=fields(topic=record.topic, reason=exc.reason))
                await self._dead_letter(work, exc.reason, None)
                return
            with (
                bind(trace_id=event.trace_id, job_id=event.job_id),
                tracing.consume_span(
                    record.topic, record.headers, event.trace_id, event.job_id, event.attempt
                ),
            ):
                try:
                    until = self.not_before(event) if self.not_before else None
                    if until is not None:
                        await self._wait_without_slot(work, sleep_until(until))
                    await self._until_done(work, lambda: self.handler(event, record))
                except PermanentError as exc:
                    reason = str(exc)
                    log.error("event cannot be handled", extra=fields(reason=reason))
                    await self._dead_letter(work, reason, event)

    async def _dead_letter(self, work: _Work, reason: str, event: Event | None) -> None:
        record = work.record
        if record.topic == self.publisher.topics.dead:
            # Never feed job.dead with its own events: that could loop for ever.
            log.critical("dead event cannot be handled; skipped", extra=fields(reason=reason))
            return
        try:
            await self._until_done(work, lambda: self.publisher.dead_letter(record, reason, event))
        except PermanentError as exc:
            log.critical("event cannot be dead-lettered; skipped", extra=fields(reason=str(exc)))

    async def _until_done(self, work: _Work, step: Callable[[], Awaitable[None]]) -> None:
        """Run ``step`` until it succeeds. A transient failure delays an event but never
        skips it; any other is tried ``max_attempts`` times, then is a PermanentError."""
        delay = FIRST_BACKOFF_S
        failures = 0
        other_failures = 0
        cause = ""
        while True:
            try:
                await step()
            except PermanentError:
                raise
            except Exception as exc:
                failures += 1
                cause = error_cause(exc)
                if not is_transient(exc, self.transient):
                    other_failures += 1
                    if other_failures >= self.max_attempts:
                        raise PermanentError(f"{type(exc).__name__}: {exc}") from exc
                log.warning(
                    "handling failed; will try again",
                    exc_info=not is_transient(exc, self.transient),
                    extra=fields(cause=cause, error=repr(exc), retry_in_s=delay),
                )
                await self._back_off(work, delay)
                delay = min(delay * 2, self.max_backoff_s)
            else:
                if failures:
                    log.info("works again", extra=fields(recovered=cause, failed_times=failures))
                return

    async def _back_off(self, work: _Work, delay: float) -> None:
        """Wait ``delay`` s without holding a slot: the partition's other events go on."""
        await self._wait_without_slot(work, asyncio.sleep(delay))

    async def _wait_without_slot(self, work: _Work, waiting: Awaitable[None]) -> None:
        offsets = self.offsets.setdefault(work.record.tp, _Offsets())
        offsets.waiting += 1
        work.holds_slot = False
        work.backing_off = True
        self.slots.release()
        try:
            await waiting
        finally:
            offsets.waiting -= 1
            work.backing_off = False
        await self.slots.acquire()
        work.holds_slot = True

    async def _pause_or_resume(self) -> None:
        await bound_backlog(
            self.consumer,
            self.offsets,
            lambda offsets: offsets.waiting,
            self.max_waiting,
            cause="events waiting to be retried",
        )

    def _to_commit(
        self, only: Iterable[TopicPartition] | None = None, *, every: bool = False
    ) -> dict[TopicPartition, int]:
        """Commit points that moved (``every``: all of them, also those committed already
        without waiting: a last commit that must not rely on an earlier one)."""
        wanted = self.assigned if only is None else self.assigned & set(only)
        return {
            tp: offsets.commit_point()
            for tp, offsets in self.offsets.items()
            if tp in wanted
            and offsets.commit_point() >= 0
            and (every or offsets.commit_point() > offsets.committed)
        }

    def _committed(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            if tp in self.offsets:
                self.offsets[tp].committed = offset

    async def commit(self, *, wait: bool = True, every: bool = False) -> None:
        """Commit, per partition, everything below the first event still in hand."""
        for tp in self.consumer.failed_commits():
            if tp in self.offsets:
                self.offsets[tp].committed = -1  # make it again
        to_commit = self._to_commit(every=every)
        if to_commit:
            await self.consumer.commit(to_commit, wait=wait)
            self._committed(to_commit)

    async def drain(self, only: set[TopicPartition] | None = None) -> None:
        """Let the events in hand (of ``only``) finish, at most the drain timeout; cancel
        those still waiting to be retried at once and the rest after the timeout."""
        mine = {t: w for t, w in self.tasks.items() if only is None or w.record.tp in only}
        if not mine:
            return
        for task, work in mine.items():
            if work.backing_off:
                task.cancel()
        _, stuck = await asyncio.wait(set(mine), timeout=self.drain_timeout_s)
        for task in stuck:
            task.cancel()
        await asyncio.gather(*stuck, return_exceptions=True)
        if stuck:
            log.warning(
                "events still in hand were cancelled; they will be handled again",
                extra=fields(count=len(stuck)),
            )

    def _on_assign(self, partitions: list[TopicPartition]) -> None:
        """On the consumer's thread: the group gave us ``partitions`` (reading starts at
        their committed offsets, so anything remembered of an earlier ownership is void)."""
        assert self._loop is not None

        async def take() -> None:
            for tp in partitions:
                self.offsets.pop(tp, None)
            self.assigned = self.assigned | set(partitions)

        asyncio.run_coroutine_threadsafe(take(), self._loop).result()

    def _on_revoke(self, partitions: list[TopicPartition]) -> None:
        """On the consumer's thread, before partitions move to another instance: finish their
        events (on the event loop) and commit them, then forget them."""
        offsets = self._give_up(partitions, commit=True)
        try:
            commit_now(self.consumer.consumer, offsets)
        except KafkaError as exc:  # partitions lost meanwhile: the next owner replays them
            log.warning(
                "cannot commit revoked partitions",
                extra=fields(cause=error_cause(exc), error=str(exc)),
            )

    def _on_lost(self, partitions: list[TopicPartition]) -> None:
        """On the consumer's thread: the group dropped us (a broker outage outlived the
        session) and ``partitions`` have a new owner already. Their events are finished or
        cancelled as on a revoke, but nothing is committed: the broker would refuse it with
        UNKNOWN_MEMBER_ID, and librdkafka would answer that by abandoning the membership
        it is acquiring again. The next owner replays from the last commit."""
        self._give_up(partitions, commit=False)

    def _give_up(
        self, partitions: list[TopicPartition], *, commit: bool
    ) -> dict[TopicPartition, int]:
        """Drain ``partitions`` on the event loop and forget them; their commit points."""
        assert self._loop is not None
        revoked = set(partitions)

        async def drain_revoked() -> dict[TopicPartition, int]:
            await self.drain(revoked)
            offsets = self._to_commit(revoked, every=True) if commit else {}
            self.assigned = self.assigned - revoked
            for tp in revoked:
                self.offsets.pop(tp, None)
            return offsets

        return asyncio.run_coroutine_threadsafe(drain_revoked(), self._loop).result()
