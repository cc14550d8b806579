"""Fixtures for the retry service's tests against the real local Kafka and FerretDB."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from jobplane import codec
from jobplane.events import E, Event, Failure, FailureKind, JobFailed
from jobplane.kafka import Publisher, make_producer
from jobplane.logs import new_trace_id
from jobplane.store import JobStore, NewJob
from jobplane.store import connect as connect_mongo
from jobplane.topics import Topics, ensure_topics
from jobplane_local.testing import Infra
from jobplane_retry.config import Settings


@pytest.fixture
def settings(infra: Infra, topic_prefix: str, mongo_db_name: str, unique_id: str) -> Settings:
    return Settings(
        kafka_bootstrap_servers=infra.kafka_bootstrap,
        mongodb_uri=infra.mongodb_uri,
        topic_prefix=topic_prefix,
        topic_partitions=2,
        mongodb_database=mongo_db_name,
        router_group_id=f"test-retry-router-{unique_id}",
        tiers_group_id=f"test-retry-tiers-{unique_id}",
        retry_delays_seconds=[60.0, 120.0, 240.0, 480.0, 960.0],
        jitter=0.1,
    )


@pytest.fixture
async def topics(settings: Settings) -> Topics:
    return await ensure_topics(settings)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[JobStore]:
    client = connect_mongo(settings)
    try:
        job_store = JobStore.from_settings(client, settings)
        await job_store.create_indexes()
        yield job_store
    finally:
        await client.close()


@pytest.fixture
async def publisher(settings: Settings, topics: Topics) -> AsyncIterator[Publisher]:
    producer = make_producer(settings, "test-producer")
    await producer.start()
    try:
        yield Publisher(producer, topics)
    finally:
        await producer.stop()


@contextlib.asynccontextmanager
async def running(coro: Any) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``coro`` as a task for the block; cancel it after, re-raising what it raised."""
    task: asyncio.Task[None] = asyncio.create_task(coro)
    await asyncio.sleep(0)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def read_events(
    settings: Settings,
    topic: str,
    cls: type[E],
    *,
    until: Callable[[list[E]], bool],
    timeout: float = 30.0,
    settle: float = 0.0,
    where: Callable[[E], bool] = lambda _: True,
) -> list[E]:
    """Events of ``topic`` from the start, until ``until`` holds (then ``settle`` s more)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    events: list[E] = []

    async def poll(timeout_ms: int) -> None:
        batches = await consumer.getmany(timeout_ms=timeout_ms)
        for records in batches.values():
            for r in records:
                event = codec.decode(r.value or b"", cls)
                if where(event):
                    events.append(event)

    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not until(events):
            if loop.time() > deadline:
                raise AssertionError(f"timed out on {topic}; got {events}")
            await poll(100)
        end = loop.time() + settle
        while loop.time() < end:
            await poll(100)
    finally:
        await consumer.stop()
    return events


def of_job(job_id: str) -> Callable[[Event], bool]:
    return lambda event: event.job_id == job_id


async def committed(settings: Settings, group_id: str, topic: str) -> dict[int, int]:
    """The committed offset per partition of ``topic`` for ``group_id`` (absent: none)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group_id)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


async def new_job(store: JobStore, job_id: str, *, app_id: str = "app-1") -> NewJob:
    new = NewJob(
        job_id=job_id,
        app_id=app_id,
        user_id="user-1",
        job_type="thumbnail",
        payload=json.dumps({"size": [64, 64]}),
        timeout_seconds=120,
        trace_id=new_trace_id(),
    )
    await store.create_job(new)
    return new


def job_failed(
    new: NewJob, attempt: int, *, retryable: bool = True, message: str = "HTTP 503"
) -> JobFailed:
    return JobFailed(
        job_id=new.job_id,
        app_id=new.app_id,
        user_id=new.user_id,
        attempt=attempt,
        trace_id=new.trace_id,
        job_type=new.job_type,
        payload=new.payload,
        timeout_seconds=new.timeout_seconds,
        failure=Failure(
            kind=FailureKind.HTTP_STATUS, message=message, retryable=retryable, http_status=503
        ),
    )
