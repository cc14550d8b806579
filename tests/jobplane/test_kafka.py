"""The shared at-least-once event loop against the real local Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import confluent_kafka
import pytest
from confluent_kafka import KafkaError as KafkaErrorCode
from jobplane.config import CommonSettings
from jobplane.events import Event, FailureKind, JobDead, JobRequested, utc_now
from jobplane.kafka import (
    EventLoop,
    KafkaError,
    PermanentError,
    Publisher,
    Record,
    is_transient,
    make_consumer,
    make_producer,
)
from jobplane.kafka_client import TopicPartition, committed_metadata
from pymongo.errors import AutoReconnect, ServerSelectionTimeoutError

from tests.support import (
    committed,
    eventually,
    free_port,
    job_requested,
    produce_raw,
    read_events,
    running,
    until_replaced,
)


def requested(job_id: str) -> JobRequested:
    return job_requested("a", job_id)


def group(settings: CommonSettings) -> str:
    return f"{settings.topic_prefix}group"


@contextlib.asynccontextmanager
async def running_loop(
    settings: CommonSettings,
    publisher: Publisher,
    handler: Any,
    concurrency: int = 1,
    *,
    ordered: bool = False,
    not_before: Any = None,
) -> AsyncIterator[EventLoop]:
    loop = EventLoop(
        make_consumer(settings, group(settings)),
        publisher,
        lambda _: JobRequested,
        handler,
        concurrency=concurrency,
        settings=settings,
        ordered=ordered,
        not_before=not_before,
    )
    async with running(loop.run([publisher.topics.requested])):
        yield loop


async def committed_total(settings: CommonSettings, topic: str) -> int:
    return sum((await committed(settings, group(settings), topic)).values())


async def wait_committed(settings: CommonSettings, topic: str, total: int) -> None:
    async def done() -> bool:
        return await committed_total(settings, topic) == total

    await eventually(done, 30, lambda: f"not {total} committed on {topic}")


async def test_failing_handler_is_retried_and_commits_only_after(
    settings: CommonSettings, publisher: Publisher
) -> None:
    attempts: list[str] = []

    async def flaky(event: Event, record: Record) -> None:
        attempts.append(event.job_id)
        if len(attempts) < 3:
            raise ConnectionError("the store is down")

    await publisher.publish(publisher.topics.requested, requested("job-1"))
    async with running_loop(settings, publisher, flaky):
        await wait_committed(settings, publisher.topics.requested, 1)
        assert attempts == ["job-1"] * 3


async def test_many_events_in_flight_and_all_committed(
    settings: CommonSettings, publisher: Publisher
) -> None:
    in_flight = 0
    most = 0

    async def slow(event: Event, record: Record) -> None:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.2)
        in_flight -= 1

    sent = [
        await publisher.send(publisher.topics.requested, requested(f"job-{i}")) for i in range(20)
    ]
    await asyncio.gather(*sent)
    async with running_loop(settings, publisher, slow, concurrency=10):
        await wait_committed(settings, publisher.topics.requested, 20)
    assert most > 1


async def test_undecodable_and_permanent_errors_go_to_job_dead(
    settings: CommonSettings, publisher: Publisher
) -> None:
    async def rejecting(event: Event, record: Record) -> None:
        raise PermanentError(f"cannot handle {event.job_id}")

    await produce_raw(settings, publisher.topics.requested, b"not avro at all", key=b"garbage-job")
    await publisher.publish(publisher.topics.requested, requested("rejected-job"))
    async with running_loop(settings, publisher, rejecting):
        await wait_committed(settings, publisher.topics.requested, 2)
    dead = await read_events(settings, publisher.topics.dead, JobDead)
    by_job = {d.job_id: d for d in dead}
    assert by_job["garbage-job"].failure is not None
    assert by_job["garbage-job"].failure.kind is FailureKind.UNDECODABLE
    assert by_job["garbage-job"].raw_event == b"not avro at all"
    assert by_job["garbage-job"].source_topic == publisher.topics.requested
    assert "cannot handle rejected-job" in by_job["rejected-job"].reason
    assert by_job["rejected-job"].failure is not None
    assert by_job["rejected-job"].failure.kind is FailureKind.REJECTED
    assert by_job["rejected-job"].app_id == "a"


async def _one_partition(
    settings: CommonSettings, publisher: Publisher, *jobs: str | JobRequested
) -> None:
    """Publish ``requested(job)`` (or the event given) for each job to partition 0, in order."""
    from jobplane import codec

    for job in jobs:
        event = requested(job) if isinstance(job, str) else job
        future = await publisher.producer.send(
            publisher.topics.requested,
            codec.encode(event),
            key=event.job_id.encode(),
            partition=0,
        )
        await future


async def test_events_that_always_fail_do_not_block_the_others(
    settings: CommonSettings, publisher: Publisher
) -> None:
    """8 events whose handler raises a bug-like error for ever fill no slot for good: with
    8 slots, the good event behind them on the same partition is handled at once, and the
    broken ones end on job.dead with the reason."""
    handled: list[str] = []

    async def handler(event: Event, record: Record) -> None:
        if event.job_id.startswith("broken"):
            raise ValueError("Header values may not contain linefeed or carriage return")
        handled.append(event.job_id)

    broken = [f"broken-{i}" for i in range(8)]
    await _one_partition(settings, publisher, *broken, "good")
    async with running_loop(settings, publisher, handler, concurrency=8):
        await eventually(lambda: _true(handled == ["good"]), 10, lambda: f"handled {handled}")
        await wait_committed(settings, publisher.topics.requested, 9)
    dead = await read_events(settings, publisher.topics.dead, JobDead)
    assert sorted(d.job_id for d in dead) == broken
    assert all("ValueError: Header values may not contain" in d.reason for d in dead)


async def test_a_transient_failure_waits_without_holding_a_slot(
    settings: CommonSettings, publisher: Publisher
) -> None:
    """With one slot, an event whose store is away backs off for ever; the events behind
    it on its partition are still handled, and the offset stays below it until it is done."""
    handled: list[str] = []
    store_up = False

    async def handler(event: Event, record: Record) -> None:
        if event.job_id == "waits" and not store_up:
            raise AutoReconnect("connection refused")
        handled.append(event.job_id)

    await _one_partition(settings, publisher, "waits", "next-1", "next-2")
    async with running_loop(settings, publisher, handler, concurrency=1):
        await eventually(lambda: _true(handled == ["next-1", "next-2"]), 10, lambda: str(handled))
        await asyncio.sleep(1.0)  # several retries: transient failures never go to job.dead
        assert await committed_total(settings, publisher.topics.requested) == 0
        store_up = True
        await eventually(lambda: _true("waits" in handled), 40, lambda: str(handled))
        await wait_committed(settings, publisher.topics.requested, 3)
    assert await read_events(settings, publisher.topics.dead, JobDead) == []


async def test_an_event_is_handled_at_its_not_before_and_waits_without_a_slot(
    settings: CommonSettings, publisher: Publisher
) -> None:
    """With one slot, an event due in 3 s is handled no earlier than that (by the wall
    clock); the event behind it on its partition is handled meanwhile, and the offset
    stays below the waiting one until it is done."""
    handled: dict[str, datetime] = {}

    async def handler(event: Event, record: Record) -> None:
        handled[event.job_id] = datetime.now(UTC)

    def not_before(event: Event) -> datetime | None:
        return event.not_before if isinstance(event, JobRequested) else None

    due = utc_now() + timedelta(seconds=3)  # room for the group to form on a busy machine
    later = dataclasses.replace(requested("later"), not_before=due)
    await _one_partition(settings, publisher, later, "now")
    async with running_loop(settings, publisher, handler, concurrency=1, not_before=not_before):
        await eventually(lambda: _true("now" in handled), 10, lambda: str(handled))
        assert "later" not in handled
        assert await committed_total(settings, publisher.topics.requested) == 0
        await eventually(lambda: _true("later" in handled), 10, lambda: str(handled))
        await wait_committed(settings, publisher.topics.requested, 2)
    assert handled["now"] < due <= handled["later"]


async def test_one_keys_events_are_handled_in_order_others_concurrently(
    settings: CommonSettings, publisher: Publisher
) -> None:
    order: list[tuple[str, int]] = []
    in_flight = 0
    most = 0

    async def handler(event: Event, record: Record) -> None:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.05)
        order.append((event.job_id, record.offset))
        in_flight -= 1

    jobs = [f"job-{i % 4}" for i in range(20)]
    await _one_partition(settings, publisher, *jobs)
    async with running_loop(settings, publisher, handler, concurrency=8, ordered=True):
        await wait_committed(settings, publisher.topics.requested, 20)
    assert most > 1  # different jobs at once
    assert most <= 4  # never two events of one job at once
    for job in {j for j, _ in order}:
        offsets = [offset for j, offset in order if j == job]
        assert offsets == sorted(offsets)


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (AutoReconnect("x"), True),
        (ServerSelectionTimeoutError("x"), True),
        (TimeoutError(), True),
        (ConnectionRefusedError(), True),
        (OSError(113, "No route to host"), True),
        (FileNotFoundError("templates/x.txt"), False),
        (ValueError("Header values may not contain linefeed"), False),
        (KeyError("bug"), False),
    ],
)
def test_transient_errors_are_told_apart(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


def test_kafka_and_smtp_errors_classified() -> None:
    import aiosmtplib
    import confluent_kafka

    def kafka(code: int) -> Exception:
        return confluent_kafka.KafkaException(confluent_kafka.KafkaError(code))

    assert is_transient(kafka(confluent_kafka.KafkaError._MSG_TIMED_OUT))
    assert is_transient(kafka(confluent_kafka.KafkaError._ALL_BROKERS_DOWN))
    assert not is_transient(kafka(confluent_kafka.KafkaError.MSG_SIZE_TOO_LARGE))
    assert is_transient(aiosmtplib.SMTPConnectError("refused"))
    assert is_transient(aiosmtplib.SMTPServerDisconnected("gone"))
    assert is_transient(aiosmtplib.SMTPResponseException(421, "busy"))
    assert not is_transient(aiosmtplib.SMTPResponseException(550, "no such user"))
    assert is_transient(KeyError("x"), extra=(KeyError,))


async def _true(value: bool) -> bool:
    return value


async def test_a_partition_with_too_many_events_waiting_is_paused_until_they_are_done(
    settings: CommonSettings, publisher: Publisher
) -> None:
    """Memory stays bounded during an outage: once 2 events of a partition wait to be
    retried, nothing more of it is fetched; when they are done it is resumed."""
    settings = settings.model_copy(update={"handler_max_waiting_per_partition": 2})
    handled: list[str] = []
    store_up = False

    async def handler(event: Event, record: Record) -> None:
        if event.job_id.startswith("waits") and not store_up:
            raise ServerSelectionTimeoutError("no primary")
        handled.append(event.job_id)

    await _one_partition(settings, publisher, "waits-1", "waits-2")
    async with running_loop(settings, publisher, handler, concurrency=4) as loop:

        async def paused() -> bool:
            return any(offsets.paused for offsets in loop.offsets.values())

        await eventually(paused, 20, lambda: "the partition was not paused")
        await _one_partition(settings, publisher, "behind")
        await asyncio.sleep(1.5)
        assert handled == []  # not even fetched: the partition is paused
        store_up = True
        await eventually(lambda: _true("behind" in handled), 40, lambda: str(handled))
        await wait_committed(settings, publisher.topics.requested, 3)
    assert sorted(handled) == ["behind", "waits-1", "waits-2"]


async def test_partitions_moving_to_a_new_member_are_drained_and_committed_first(
    settings: CommonSettings, publisher: Publisher
) -> None:
    """A second instance joins while the first handles slow events: the first finishes the
    events of the partitions it gives up and commits them, so none is handled twice."""
    handled: list[str] = []

    async def slow(event: Event, record: Record) -> None:
        await asyncio.sleep(5.0)  # longer than a heartbeat: the rebalance finds them in hand
        handled.append(event.job_id)

    topic = publisher.topics.requested
    await asyncio.gather(*[await publisher.send(topic, requested(f"j-{i}")) for i in range(16)])
    async with running_loop(settings, publisher, slow, concurrency=16) as first:

        async def started() -> bool:
            return len(first.tasks) == 16

        await eventually(started, 20, lambda: "the first instance took nothing")
        async with running_loop(settings, publisher, slow, concurrency=16) as second:

            async def moved() -> bool:
                return bool(await second.consumer.assignment())

            await eventually(moved, 30, lambda: "no partition moved to the second instance")
            await wait_committed(settings, topic, 16)
    assert sorted(handled) == sorted(f"j-{i}" for i in range(16))  # each once


async def test_stopping_lets_events_in_hand_finish_and_cancels_the_stuck_uncommitted(
    settings: CommonSettings, publisher: Publisher
) -> None:
    """Cancelling the loop (SIGTERM in a service) fetches nothing more, lets the events in
    hand finish within the drain timeout and commits them; one stuck longer is cancelled
    and stays uncommitted (handled again by the next consumer)."""
    settings = settings.model_copy(update={"drain_timeout_seconds": 1.5})
    started: list[str] = []
    finished: list[str] = []

    async def handler(event: Event, record: Record) -> None:
        started.append(event.job_id)
        await asyncio.sleep(60 if event.job_id == "stuck" else 0.5)
        finished.append(event.job_id)

    await _one_partition(settings, publisher, "quick", "stuck")
    await _one_partition(settings, publisher, *[f"other-{i}" for i in range(3)])
    loop = EventLoop(
        make_consumer(settings, group(settings)),
        publisher,
        lambda _: JobRequested,
        handler,
        concurrency=8,
        settings=settings,
    )
    task = asyncio.create_task(loop.run([publisher.topics.requested]))
    await eventually(lambda: _true(len(started) == 5), 20, lambda: f"started {started}")
    stop_at = asyncio.get_running_loop().time()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    took = asyncio.get_running_loop().time() - stop_at
    assert sorted(finished) == sorted(["quick", *[f"other-{i}" for i in range(3)]])
    assert took < 1.5 + 2.0
    # The commit point of partition 0 stops below "stuck" (offset 1): quick is committed.
    assert (await committed(settings, group(settings), publisher.topics.requested)) == {0: 1}


async def test_partitions_lost_with_the_membership_are_dropped_uncommitted(
    settings: CommonSettings, publisher: Publisher
) -> None:
    """When the group has dropped the member (an outage outlived its session), the events in
    hand of its partitions finish but nothing is committed for them: the partitions have a
    new owner, and a refused commit would make librdkafka abandon the membership it is
    acquiring again. (librdkafka's call is made here by hand, on the consumer's thread.)"""
    settings = settings.model_copy(update={"drain_timeout_seconds": 10.0})
    release = asyncio.Event()

    async def waits(event: Event, record: Record) -> None:
        await release.wait()

    async def release_soon() -> None:
        await asyncio.sleep(1.0)  # while the lost partitions are being drained
        release.set()

    topic = publisher.topics.requested
    await asyncio.gather(*[await publisher.send(topic, requested(f"j-{i}")) for i in range(4)])
    async with running_loop(settings, publisher, waits, concurrency=4) as loop:
        await eventually(lambda: _true(len(loop.tasks) == 4), 20, lambda: "nothing in hand")
        lost = sorted(loop.assigned)
        releasing = asyncio.create_task(release_soon())
        await loop.consumer.call(lambda _consumer: loop._on_lost(lost))
        await releasing
        assert not loop.tasks
        assert not loop.assigned & set(lost)
    assert await committed_total(settings, topic) == 0


async def test_a_consumer_that_lost_every_broker_is_replaced_and_consumes_again(
    settings: CommonSettings, publisher: Publisher
) -> None:
    """A consumer left without a broker (librdkafka issue 5511, see BrokerWatch) gives its
    partitions up as lost and a new consumer joins the group in its place: what was
    published before and after is all handled and committed."""
    handled: list[str] = []

    async def handle(event: Event, record: Record) -> None:
        handled.append(event.job_id)

    topic = publisher.topics.requested
    await asyncio.gather(*[await publisher.send(topic, requested(f"before-{i}")) for i in range(4)])
    async with running_loop(settings, publisher, handle, concurrency=4) as loop:
        await wait_committed(settings, topic, 4)
        lost: list[list[TopicPartition]] = []
        on_lost = loop._on_lost

        def recording(partitions: list[TopicPartition]) -> None:
            lost.append(sorted(partitions))
            on_lost(partitions)

        loop.consumer._on_lost = recording
        await until_replaced(lambda: loop.consumer.broker_watch)
        assert lost == [sorted(TopicPartition(topic, p) for p in range(2))]
        sent = [await publisher.send(topic, requested(f"after-{i}")) for i in range(4)]
        await asyncio.gather(*sent)
        await wait_committed(settings, topic, 8)
    assert sorted(handled) == sorted(
        [f"before-{i}" for i in range(4)] + [f"after-{i}" for i in range(4)]
    )


async def test_a_consumer_outside_its_group_sends_no_commit(settings: CommonSettings) -> None:
    """Not a member (no broker reached yet): a commit that waits fails at once with
    UNKNOWN_MEMBER_ID; one that does not is kept to be made again once a member."""
    from jobplane.kafka_client import AsyncConsumer, TopicPartition

    consumer = AsyncConsumer(
        {
            "bootstrap.servers": "127.0.0.1:9",
            "group.id": group(settings),
            "enable.auto.commit": False,
        }
    )
    await consumer.start(["nowhere"])
    tp = TopicPartition("nowhere", 0)
    try:
        with pytest.raises(KafkaError) as refused:
            await consumer.commit({tp: 5})
        assert refused.value.args[0].code() == KafkaErrorCode.UNKNOWN_MEMBER_ID
        await consumer.commit({tp: 5}, wait=False)
        assert consumer.failed_commits() == {tp}
    finally:
        await consumer.close()


class _CoordinatorMoving:
    """A consumer whose group coordinator answers ``busy`` before it answers: what a fresh
    broker does while it creates its offsets topic (seen on a new Kafka: NOT_COORDINATOR)."""

    def __init__(self, *busy: int) -> None:
        self.busy = list(busy)

    def committed(self, partitions: list[Any], timeout: float) -> list[Any]:
        if self.busy:
            raise KafkaError(KafkaErrorCode(self.busy.pop(0)))
        return [confluent_kafka.TopicPartition(tp.topic, tp.partition, 7, "m") for tp in partitions]


def test_a_busy_coordinator_is_asked_again_for_the_committed_offsets() -> None:
    consumer = _CoordinatorMoving(
        KafkaErrorCode.NOT_COORDINATOR, KafkaErrorCode.COORDINATOR_LOAD_IN_PROGRESS
    )
    found = committed_metadata(consumer, [TopicPartition("t", 0)])  # type: ignore[arg-type]
    assert found == {TopicPartition("t", 0): (7, "m")}


def test_other_errors_and_a_coordinator_busy_for_too_long_are_raised() -> None:
    with pytest.raises(KafkaError):
        committed_metadata(
            _CoordinatorMoving(KafkaErrorCode.GROUP_AUTHORIZATION_FAILED),  # type: ignore[arg-type]
            [TopicPartition("t", 0)],
        )
    with pytest.raises(KafkaError):
        committed_metadata(
            _CoordinatorMoving(*[KafkaErrorCode.NOT_COORDINATOR] * 100),  # type: ignore[arg-type]
            [TopicPartition("t", 0)],
            timeout_s=0.3,
        )


async def test_a_stopped_producer_fails_what_it_could_not_deliver(
    settings: CommonSettings,
) -> None:
    away = settings.model_copy(update={"kafka_bootstrap_servers": f"127.0.0.1:{free_port()}"})
    producer = make_producer(away, client_id="test-unreachable")
    await producer.start()
    acked = await producer.send("t", b"v", key=b"k")
    await producer.stop(within_s=0.2)
    with pytest.raises(KafkaError) as failed:
        await asyncio.wait_for(acked, 5)  # told at once, not left waiting for ever
    assert failed.value.args[0].code() == KafkaErrorCode._PURGE_QUEUE
