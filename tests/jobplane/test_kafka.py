"""The shared at-least-once event loop against the real local Kafka."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from jobplane import codec
from jobplane.config import CommonSettings
from jobplane.events import Event, FailureKind, JobDead, JobRequested
from jobplane.kafka import (
    EventLoop,
    PermanentError,
    Publisher,
    Record,
    make_consumer,
)
from jobplane.topics import Topics

from tests.support import eventually, running


def requested(job_id: str) -> JobRequested:
    return JobRequested(
        job_id=job_id, app_id="a", user_id="u", attempt=1, trace_id="t", job_type="x", payload="{}"
    )


@contextlib.asynccontextmanager
async def running_loop(
    settings: CommonSettings, publisher: Publisher, handler: Any, concurrency: int = 1
) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = make_consumer(settings, f"{settings.topic_prefix}group")
    loop = EventLoop(consumer, publisher, lambda _: JobRequested, handler, concurrency=concurrency)
    consumer.subscribe([publisher.topics.requested], listener=loop.rebalance_listener())
    await consumer.start()
    try:
        async with running(loop.run()):
            yield consumer
    finally:
        await consumer.stop()


async def committed_total(consumer: AIOKafkaConsumer, topic: str) -> int:
    total = 0
    for partition in consumer.partitions_for_topic(topic) or ():
        total += await consumer.committed(TopicPartition(topic, partition)) or 0
    return total


async def test_failing_handler_is_retried_and_commits_only_after(
    settings: CommonSettings, publisher: Publisher
) -> None:
    attempts: list[str] = []

    async def flaky(event: Event, record: Record) -> None:
        attempts.append(event.job_id)
        if len(attempts) < 3:
            raise ConnectionError("the store is down")

    await publisher.publish(publisher.topics.requested, requested("job-1"))
    async with running_loop(settings, publisher, flaky) as consumer:
        await eventually(lambda: committed_total(consumer, publisher.topics.requested))
        assert attempts == ["job-1"] * 3
        assert await committed_total(consumer, publisher.topics.requested) == 1


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

    for i in range(20):
        await publisher.publish(publisher.topics.requested, requested(f"job-{i}"))
    async with running_loop(settings, publisher, slow, concurrency=10) as consumer:

        async def all_committed() -> bool:
            return await committed_total(consumer, publisher.topics.requested) == 20

        await eventually(all_committed)
    assert most > 1


async def test_undecodable_and_permanent_errors_go_to_job_dead(
    settings: CommonSettings, publisher: Publisher
) -> None:

    async def rejecting(event: Event, record: Record) -> None:
        raise PermanentError(f"cannot handle {event.job_id}")

    await publisher.producer.send_and_wait(
        publisher.topics.requested, key=b"garbage-job", value=b"not avro at all"
    )
    await publisher.publish(publisher.topics.requested, requested("rejected-job"))
    async with running_loop(settings, publisher, rejecting) as consumer:
        await eventually(lambda: _eq(committed_total(consumer, publisher.topics.requested), 2))
    dead = await _read_all(settings, publisher.topics)
    by_job = {d.job_id: d for d in dead}
    assert by_job["garbage-job"].failure is not None
    assert by_job["garbage-job"].failure.kind is FailureKind.UNDECODABLE
    assert by_job["garbage-job"].raw_event == b"not avro at all"
    assert by_job["garbage-job"].source_topic == publisher.topics.requested
    assert "cannot handle rejected-job" in by_job["rejected-job"].reason


async def _eq(value: Any, expected: int) -> bool:
    return bool(await value == expected)


async def _read_all(settings: CommonSettings, topics: Topics) -> list[JobDead]:
    consumer = AIOKafkaConsumer(
        topics.dead,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=f"{settings.topic_prefix}reader",
    )
    await consumer.start()
    try:
        found: list[JobDead] = []
        while len(found) < 2:
            batches = await consumer.getmany(timeout_ms=5000)
            assert batches, "nothing arrived on job.dead"
            for records in batches.values():
                found += [codec.decode(r.value, JobDead) for r in records]
        return found
    finally:
        await consumer.stop()
