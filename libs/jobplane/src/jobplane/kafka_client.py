"""librdkafka (confluent-kafka) driven from asyncio without ever blocking the event loop.

Why the classic client and not ``confluent_kafka.aio`` (2.16): its ``AIOProducer`` refuses
message headers (our trace id travels in one) and holds messages in a Python-side buffer for
up to ``buffer_timeout`` (1 s) before librdkafka sees them; its ``AIOConsumer`` sends every
call through a thread pool while librdkafka's consumer serializes calls from different
threads (a commit waits for a running ``consume`` to time out), and ``consume(n, timeout)``
waits for the whole timeout unless ``n`` messages arrive. So:

- **Producer**: ``produce()`` is called on the event loop thread (it only enqueues into
  librdkafka and never blocks); one background thread sits in ``poll()`` and serves the
  delivery reports, which it hands to the event loop in one batch per ``poll`` return, where
  they resolve one future per message. Publishing many events is "produce them all, then
  await the futures": no round trip per event.
- **Consumer**: every call runs on one dedicated thread (librdkafka's consumer is used from one
  thread, as it wants), so the loop awaits them; a fetch is ``poll(timeout)`` (returns at the
  first message) followed by ``consume(n - 1, 0)`` (takes what else is buffered, without
  waiting). Rebalance callbacks run on that thread inside the fetch; they may call back into
  the event loop (and wait for it) and then use the consumer directly.
- **A client that lost every broker is replaced** (:class:`BrokerWatch` says when): a new
  consumer takes the old one's place in the group, after its partitions are given up as
  lost; a new producer takes new sends, and what the old one held fails, to be sent again.

Measured (``python -m jobplane.kafka_floor``): see ``jobplane.kafka``'s docstring.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import confluent_kafka
from confluent_kafka import KafkaException

from jobplane.logs import fields

log = logging.getLogger("jobplane.kafka")
_client_log = logging.getLogger("jobplane.kafka.client")

T = TypeVar("T")

# How long the producer's delivery thread and a consumer fetch wait at most in one call: the
# bound on how soon they notice a stop, not a latency (both return at the first event).
_POLL_S = 0.2
# How long a replaced producer may take to report what it held as failed.
_RETIRE_S = 5.0

KafkaError = KafkaException
"""What a failed produce, commit or admin call raises (librdkafka's error is ``args[0]``)."""


def kafka_error(code: int, reason: str) -> KafkaException:
    return KafkaException(confluent_kafka.KafkaError(code, reason))


class TopicPartition(NamedTuple):
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed message, as plain values (what handlers see)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    @classmethod
    def from_message(cls, message: confluent_kafka.Message) -> Record:
        headers = message.headers() or ()
        return cls(
            topic=message.topic() or "",
            partition=message.partition() or 0,
            offset=message.offset() or 0,
            key=message.key(),
            value=message.value(),
            headers=tuple(
                (name, value if isinstance(value, bytes) else str(value or "").encode())
                for name, value in (headers.items() if isinstance(headers, dict) else headers)
            ),
        )


def client_callbacks(name: str) -> dict[str, Any]:
    """``error_cb`` and ``logger`` for a librdkafka client: its errors and logs go through
    Python logging (and so through the repeat filter of ``jobplane.logs``), one cause per
    error code or log facility."""

    def error_cb(error: confluent_kafka.KafkaError) -> None:
        level = logging.ERROR if error.fatal() else logging.WARNING
        _client_log.log(
            level,
            "kafka client error",
            extra=fields(client=name, cause=f"kafka:{error.name()}", error=error.str()),
        )

    return {"error_cb": error_cb, "logger": _LibrdkafkaLogger(name)}


class _LibrdkafkaLogger:
    """librdkafka calls ``log(level, "%s [%s] %s", facility, client, text)``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def log(self, level: int, _fmt: str, facility: str, _client: str, text: str) -> None:
        # librdkafka uses syslog levels (3 error … 7 debug); logging's are 40 … 10.
        py_level = {0: 50, 1: 50, 2: 50, 3: 40, 4: 30, 5: 20, 6: 20}.get(level, 10)
        _client_log.log(
            py_level,
            "librdkafka %s: %s",
            facility,
            text,
            extra=fields(client=self.name, cause=f"librdkafka:{facility}"),
        )


# How often every long-lived client reports its statistics: how soon a client that lost
# every broker is noticed.
_STATISTICS_INTERVAL_MS = 2000
# Reports in a row without a broker before the client counts as lost: one report may fall
# between librdkafka dropping old brokers and adding the bootstrap servers again.
_REPORTS_WITHOUT_BROKER = 2


class BrokerWatch:
    """Tells, from a librdkafka client's statistics, that it lost every broker for good.

    librdkafka (2.16) drops each broker a metadata response leaves out, the bootstrap servers
    included. A Kafka broker in controlled shutdown lists only the live brokers, so the last
    broker of a cluster, stopping, answers with none: a client that asked at that moment has
    no broker left. Then nothing asks for metadata again and nothing starts a re-bootstrap,
    and the client never reconnects (librdkafka issue 5511). Here it left a dispatcher that
    consumed nothing after Kafka restarted. The cure is a new client."""

    def __init__(self, chained: Callable[[str], None] | None = None) -> None:
        self._chained = chained  # another stats_cb (the consumer lag of jobplane.metrics)
        self._reports_without_broker = 0

    def __call__(self, statistics_json: str) -> None:
        """librdkafka's ``stats_cb``, from the thread that polls the client."""
        try:
            brokers = json.loads(statistics_json).get("brokers") or {}
        except (ValueError, AttributeError):
            brokers = None  # unreadable: tells nothing either way
        if brokers is not None:
            # "configured": a bootstrap server; "learned": from metadata. The others
            # ("logical" coordinators, "internal") connect through one of those.
            if any(b.get("source") in ("configured", "learned") for b in brokers.values()):
                self._reports_without_broker = 0
            else:
                self._reports_without_broker += 1
        if self._chained is not None:
            self._chained(statistics_json)

    @property
    def lost_every_broker(self) -> bool:
        return self._reports_without_broker >= _REPORTS_WITHOUT_BROKER


def log_replacing(client: str) -> None:
    _client_log.warning(
        "kafka client lost every broker; replacing it",
        extra=fields(client=client, cause="kafka:no broker left"),
    )


def watched_config(config: dict[str, Any], name: str) -> tuple[dict[str, Any], BrokerWatch]:
    """``config`` for a long-lived client: errors and logs through Python logging, and
    statistics feeding a :class:`BrokerWatch` (and the config's own ``stats_cb``, if any)."""
    watch = BrokerWatch(config.get("stats_cb"))
    interval_ms = int(config.get("statistics.interval.ms", _STATISTICS_INTERVAL_MS))
    full = {
        **config,
        **client_callbacks(name),
        "statistics.interval.ms": min(interval_ms, _STATISTICS_INTERVAL_MS),
        "stats_cb": watch,
    }
    return full, watch


class AsyncProducer:
    """librdkafka's producer: ``send`` enqueues and returns a future of the broker's ack."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self._producer: confluent_kafka.Producer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reports: collections.deque[tuple[asyncio.Future[None], Any]] = collections.deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._watch = BrokerWatch()
        self._name = str(config.get("client.id", "producer"))

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._producer = self._create()
        self._thread = threading.Thread(
            target=self._serve_reports, name="kafka-producer-reports", daemon=True
        )
        self._thread.start()

    @property
    def broker_watch(self) -> BrokerWatch:
        """The watch of the current client (a new client gets a new one)."""
        return self._watch

    def _create(self) -> confluent_kafka.Producer:
        config, self._watch = watched_config(self.config, self._name)
        return confluent_kafka.Producer(config)

    def _serve_reports(self) -> None:
        while not self._stop.is_set():
            producer = self._producer  # the current one: it may be replaced
            assert producer is not None
            served = producer.poll(_POLL_S)
            if self._watch.lost_every_broker:
                self._on_loop(self._replace)
            if served:
                self._on_loop(self._resolve_reports)

    def _on_loop(self, function: Callable[[], None]) -> None:
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(function)

    def _replace(self) -> None:
        """On the event loop (where ``send`` produces, so no send goes to the old one after
        this): a new producer for what comes; what the old one held fails (its senders
        send it again) on a thread of its own. The delivery thread asks for this after every
        poll until it has run; the calls after the first find a watch not lost and return."""
        old = self._producer
        if old is None or self._closed or not self._watch.lost_every_broker:
            return
        log_replacing(self._name)
        self._producer = self._create()
        threading.Thread(
            target=self._retire, args=(old,), name="kafka-producer-retired", daemon=True
        ).start()

    def _retire(self, old: confluent_kafka.Producer) -> None:
        """Fail what ``old`` holds: purged, each message is reported failed (_PURGE_QUEUE)."""
        old.purge()
        deadline = time.monotonic() + _RETIRE_S
        while len(old) and time.monotonic() < deadline:
            old.poll(_POLL_S)
        old.poll(0)
        self._on_loop(self._resolve_reports)

    def _resolve_reports(self) -> None:
        while self._reports:
            future, error = self._reports.popleft()
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(KafkaException(error))

    def _producer_or_fail(self) -> confluent_kafka.Producer:
        if self._producer is None or self._closed:
            raise kafka_error(confluent_kafka.KafkaError._STATE, "the producer is not running")
        return self._producer

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
        wait_for_room: bool = True,
    ) -> asyncio.Future[None]:
        """Enqueue one message; the future resolves when the broker has it (or fails).
        While librdkafka's queue is full (the broker is slow or away) it waits for room, or
        raises ``BufferError`` with ``wait_for_room=False``."""
        producer = self._producer_or_fail()
        assert self._loop is not None
        future: asyncio.Future[None] = self._loop.create_future()
        reports = self._reports

        def delivered(error: Any, _message: Any) -> None:  # on the delivery thread
            reports.append((future, error))

        while True:
            try:
                producer.produce(
                    topic,
                    value=value,
                    key=key,
                    partition=-1 if partition is None else partition,
                    headers=list(headers) if headers else None,
                    on_delivery=delivered,
                )
                return future
            except BufferError:
                if not wait_for_room:
                    raise
                await asyncio.sleep(0.05)  # wait, don't drop
                producer = self._producer_or_fail()

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> None:
        await (await self.send(topic, value, key=key, partition=partition, headers=headers))

    async def flush(self, within_s: float) -> int:
        """Wait until everything enqueued is acked (or ``within_s``); how many are left."""
        producer = self._producer_or_fail()
        left = await asyncio.to_thread(producer.flush, within_s)
        self._resolve_reports()
        return left

    async def stop(self, within_s: float = 30.0) -> None:
        """Deliver what is enqueued (at most ``within_s`` s), then stop; unsent sends fail."""
        if self._producer is None or self._closed:
            self._closed = True
            return
        try:
            left = await self.flush(within_s)
            if left:
                log.warning("producer stopped with undelivered messages", extra=fields(left=left))
        finally:
            self._closed = True
            self._stop.set()
            if self._thread is not None:
                await asyncio.to_thread(self._thread.join)
            # What is still enqueued fails now: purging makes librdkafka report each such
            # message as failed (_PURGE_QUEUE), and those reports resolve their senders' futures.
            self._producer.purge()
            self._producer.poll(0)
            self._resolve_reports()


class AsyncConsumer:
    """librdkafka's consumer, every call on its own thread; the event loop awaits them."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self._consumer: confluent_kafka.Consumer | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-consumer")
        self.group_metadata: Any = None  # refreshed at every fetch, for transactions
        self._failed_commits: set[TopicPartition] = set()
        self._watch = BrokerWatch()
        self._name = str(config.get("group.id", "consumer"))
        self._topics: list[str] = []
        self._on_assign: Callable[[list[TopicPartition]], None] | None = None
        self._on_revoke: Callable[[list[TopicPartition]], None] | None = None
        self._on_lost: Callable[[list[TopicPartition]], None] | None = None

    def _committed(self, error: Any, partitions: list[confluent_kafka.TopicPartition]) -> None:
        """librdkafka's report of a commit (on the consumer's thread): remember failures,
        so that the caller commits those partitions again (see ``failed_commits``)."""
        failed = [tp for tp in partitions if error is not None or tp.error is not None]
        if not failed:
            return
        self._failed_commits.update(TopicPartition(tp.topic, tp.partition) for tp in failed)
        first: Any = error if error is not None else failed[0].error
        _client_log.warning(
            "commit failed; it will be made again",
            extra=fields(cause=f"kafka:{first.name()}", error=first.str()),
        )

    def failed_commits(self) -> set[TopicPartition]:
        """Partitions whose commit failed since the last call."""
        failed, self._failed_commits = self._failed_commits, set()
        return failed

    @property
    def consumer(self) -> confluent_kafka.Consumer:
        """The librdkafka consumer: only for rebalance callbacks (they run on its thread)."""
        if self._consumer is None:
            raise kafka_error(confluent_kafka.KafkaError._STATE, "the consumer is not running")
        return self._consumer

    async def call(self, function: Callable[[confluent_kafka.Consumer], T]) -> T:
        """Run ``function(consumer)`` on the consumer's thread."""
        consumer = self.consumer
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, function, consumer)

    async def start(
        self,
        topics: Sequence[str],
        on_assign: Callable[[list[TopicPartition]], None] | None = None,
        on_revoke: Callable[[list[TopicPartition]], None] | None = None,
        on_lost: Callable[[list[TopicPartition]], None] | None = None,
    ) -> None:
        """Create the consumer and subscribe; the callbacks run on the consumer's thread.

        ``on_lost`` (default: ``on_revoke``): the group dropped this member, so the partitions
        belong to somebody else already and a commit for them can only fail."""
        self._topics = list(topics)
        self._on_assign, self._on_revoke = on_assign, on_revoke
        self._on_lost = on_lost or on_revoke
        await asyncio.get_running_loop().run_in_executor(self._thread, self._create)

    @property
    def broker_watch(self) -> BrokerWatch:
        """The watch of the current client (a new client gets a new one)."""
        return self._watch

    def _create(self) -> None:
        """On the consumer's thread: a new consumer, subscribed."""
        config, self._watch = watched_config(
            {**self.config, "on_commit": self._committed}, self._name
        )
        consumer = confluent_kafka.Consumer(config)
        self._consumer = consumer
        consumer.subscribe(
            self._topics,
            on_assign=self._calling(self._on_assign),
            on_revoke=self._calling(self._on_revoke),
            on_lost=self._calling(self._on_lost),
        )

    def _calling(
        self, callback: Callable[[list[TopicPartition]], None] | None
    ) -> Callable[[Any, list[confluent_kafka.TopicPartition]], None]:
        def call(consumer: Any, partitions: list[confluent_kafka.TopicPartition]) -> None:
            # A replaced consumer's callbacks (it closes on a thread of its own) are not
            # ours to act on: its partitions were given up already.
            if callback is not None and consumer is self._consumer:
                callback([TopicPartition(p.topic, p.partition) for p in partitions])

        return call

    def _replace(self, old: confluent_kafka.Consumer) -> None:
        """On the consumer's thread: ``old`` lost every broker (see BrokerWatch). Its
        partitions are given up as lost (``on_lost``: not committed; whoever owns them next
        reads them from the last commit) and a new consumer joins the group. The group
        hands it partitions once the old member's session has expired."""
        log_replacing(self._name)
        lost = [TopicPartition(p.topic, p.partition) for p in old.assignment()]
        self._consumer = None
        if lost and self._on_lost is not None:
            self._on_lost(lost)
        # It can reach no broker, so its close has nothing to say to the group: not waited for.
        threading.Thread(target=old.close, name="kafka-consumer-retired", daemon=True).start()
        self._create()

    async def fetch(self, max_records: int, max_wait_s: float = _POLL_S) -> list[Record]:
        """Up to ``max_records`` messages: returns at the first one, or after ``max_wait_s``."""

        def fetch(consumer: confluent_kafka.Consumer) -> list[Record]:
            first = consumer.poll(max_wait_s)
            if self._watch.lost_every_broker:
                self._replace(consumer)
                return []  # (nothing of it was handed out: the new consumer reads it again)
            self.group_metadata = consumer.consumer_group_metadata()
            if first is None:
                return []
            messages = [first]
            if max_records > 1:
                messages += consumer.consume(max_records - 1, 0)
            records = []
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() != confluent_kafka.KafkaError._PARTITION_EOF:
                        _client_log.warning(
                            "kafka fetch error",
                            extra=fields(cause=f"kafka:{error.name()}", error=error.str()),
                        )
                    continue
                records.append(Record.from_message(message))
            return records

        return await self.call(fetch)

    async def commit(self, offsets: dict[TopicPartition, int], *, wait: bool = True) -> None:
        """Commit ``offsets`` (the next offset to read, per partition).

        ``wait=False`` hands the commit to librdkafka and returns (a synchronous commit takes
        ~6 ms of the consumer's thread on the local broker); a failure is logged and listed
        by ``failed_commits``, as is a commit deferred because the consumer is joining its
        group again. Commits are applied in order."""

        def commit(consumer: confluent_kafka.Consumer) -> None:
            try:
                commit_now(consumer, offsets, wait=wait)
            except KafkaException as exc:
                if wait or exc.args[0].code() != confluent_kafka.KafkaError.UNKNOWN_MEMBER_ID:
                    raise
                self._failed_commits.update(offsets)  # made again once a member

        if offsets:
            await self.call(commit)

    async def assignment(self) -> set[TopicPartition]:
        return await self.call(
            lambda consumer: {TopicPartition(p.topic, p.partition) for p in consumer.assignment()}
        )

    async def pause(self, partitions: Sequence[TopicPartition]) -> None:
        await self.call(lambda consumer: consumer.pause(_native(partitions)))

    async def resume(self, partitions: Sequence[TopicPartition]) -> None:
        await self.call(lambda consumer: consumer.resume(_native(partitions)))

    async def close(self) -> None:
        """Leave the group (the revoke callback runs first) and free the consumer."""
        if self._consumer is not None:
            try:
                await self.call(lambda consumer: consumer.close())
            finally:
                self._consumer = None
        self._thread.shutdown(wait=False)


def commit_now(
    consumer: confluent_kafka.Consumer, offsets: dict[TopicPartition, int], *, wait: bool = True
) -> None:
    """Commit on the consumer's own thread (also from a rebalance callback).

    Raises UNKNOWN_MEMBER_ID without sending anything while the consumer is not a member of
    its group (it is joining again): the broker would answer that, and on that answer
    librdkafka drops the membership it is acquiring and starts over, so commits at a steady
    pace would keep the consumer out of its group for ever."""
    if not offsets:
        return
    if not consumer.memberid():
        raise kafka_error(
            confluent_kafka.KafkaError.UNKNOWN_MEMBER_ID, "not a member of the group (joining)"
        )
    native = [
        confluent_kafka.TopicPartition(tp.topic, tp.partition, o) for tp, o in offsets.items()
    ]
    if not wait:
        consumer.commit(offsets=native, asynchronous=True)
        return
    for tp in consumer.commit(offsets=native, asynchronous=False) or ():
        if tp.error is not None:
            raise KafkaException(tp.error)


# What a group coordinator answers while it moves or loads, e.g. a fresh broker creating its
# offsets topic for the first group: asked again a moment later, it answers.
_COORDINATOR_BUSY = frozenset(
    {
        confluent_kafka.KafkaError.NOT_COORDINATOR,
        confluent_kafka.KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        confluent_kafka.KafkaError.COORDINATOR_NOT_AVAILABLE,
    }
)
_COORDINATOR_RETRY_S = 0.1


def committed_metadata(
    consumer: confluent_kafka.Consumer,
    partitions: Sequence[TopicPartition],
    timeout_s: float = 30.0,
) -> dict[TopicPartition, tuple[int, str]]:
    """The group's committed offset and its metadata per partition (none: absent); on the
    consumer's thread, e.g. in a rebalance callback. A busy coordinator is asked again
    until ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            found = consumer.committed(_native(partitions), max(deadline - time.monotonic(), 0.1))
            break
        except KafkaException as exc:
            if exc.args[0].code() not in _COORDINATOR_BUSY or time.monotonic() >= deadline:
                raise
            time.sleep(_COORDINATOR_RETRY_S)
    return {
        TopicPartition(tp.topic, tp.partition): (tp.offset, tp.metadata or "")
        for tp in found
        if tp.offset >= 0
    }


def _native(partitions: Sequence[TopicPartition]) -> list[confluent_kafka.TopicPartition]:
    return [confluent_kafka.TopicPartition(tp.topic, tp.partition) for tp in partitions]


@dataclass(frozen=True, slots=True)
class OutMessage:
    topic: str
    value: bytes
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


class TransactionalProducer:
    """A transactional producer for consume-transform-produce: the messages a batch of
    consumed events led to and those events' offsets are committed in one transaction, so a
    crash leaves either both or neither. Blocking calls run on the producer's own thread.

    No BrokerWatch here: the producer is polled only when it commits, so statistics would
    pile up between commits. One that lost every broker fails its next transaction (its
    coordinator is out of reach), and after any failed transaction the next one opens a new
    producer: a failure is rare, and a new producer costs one round trip."""

    def __init__(self, config: dict[str, Any], transaction_timeout_s: float = 30.0) -> None:
        self.config = config
        self.timeout_s = transaction_timeout_s
        self._producer: confluent_kafka.Producer | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-txn")

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._open)

    def _open(self) -> None:
        name = str(self.config.get("transactional.id", "transactional"))
        producer = confluent_kafka.Producer({**self.config, **client_callbacks(name)})
        producer.init_transactions(self.timeout_s)
        self._producer = producer

    async def commit(
        self,
        messages: Sequence[OutMessage],
        offsets: dict[TopicPartition, tuple[int, str]],
        group_metadata: Any,
    ) -> None:
        """Produce ``messages`` and commit ``offsets`` (offset and metadata per partition)
        for the consumer group of ``group_metadata``, atomically. Raises KafkaException if
        the transaction did not commit (it was aborted: read_committed consumers see none
        of it)."""
        await asyncio.get_running_loop().run_in_executor(
            self._thread, self._transact, messages, offsets, group_metadata
        )

    def _transact(
        self,
        messages: Sequence[OutMessage],
        offsets: dict[TopicPartition, tuple[int, str]],
        group_metadata: Any,
    ) -> None:
        if self._producer is None:
            self._open()  # after a fatal error: a new producer fences the old one
        producer = self._producer
        assert producer is not None
        try:
            producer.begin_transaction()
            for message in messages:
                producer.produce(
                    message.topic,
                    value=message.value,
                    key=message.key,
                    headers=list(message.headers) or None,
                )
            if offsets:
                producer.send_offsets_to_transaction(
                    [
                        confluent_kafka.TopicPartition(tp.topic, tp.partition, offset, metadata)
                        for tp, (offset, metadata) in offsets.items()
                    ],
                    group_metadata,
                    self.timeout_s,
                )
            self._commit_transaction(producer)
        except KafkaException as exc:
            if exc.args[0].txn_requires_abort():
                with contextlib.suppress(KafkaException):
                    producer.abort_transaction(self.timeout_s)
            # The next transaction gets a new producer with the same transactional id: it
            # fences this one and aborts what this one left open (Kafka away), and it has
            # brokers where this one may have lost them all (see the class docstring).
            self._producer = None
            raise
        finally:
            producer.poll(0)  # drop the delivery reports: the commit covers them

    def _commit_transaction(self, producer: confluent_kafka.Producer) -> None:
        for _ in range(3):
            try:
                producer.commit_transaction(self.timeout_s)
                return
            except KafkaException as exc:
                if not exc.args[0].retriable():
                    raise
        producer.commit_transaction(self.timeout_s)

    async def stop(self) -> None:
        def close() -> None:
            if self._producer is not None:
                self._producer.flush(self.timeout_s)
                self._producer = None

        await asyncio.get_running_loop().run_in_executor(self._thread, close)
        self._thread.shutdown(wait=False)
