"""Everything a service connects to, opened and closed in one place."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from pymongo import AsyncMongoClient

from jobplane.config import CommonSettings
from jobplane.events import Event
from jobplane.kafka import EventLoop, Handler, Publisher, make_consumer, make_producer
from jobplane.logs import fields
from jobplane.store import Document, JobStore
from jobplane.store import connect as connect_mongo
from jobplane.topics import Topics, ensure_topics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Connections:
    settings: CommonSettings
    topics: Topics
    store: JobStore
    publisher: Publisher
    producer: AIOKafkaProducer
    mongo: AsyncMongoClient[Document]


@asynccontextmanager
async def connect(settings: CommonSettings, service: str) -> AsyncIterator[Connections]:
    """Create the topics and indexes (idempotent), then open the store and a producer."""
    topics = await ensure_topics(settings)
    mongo = connect_mongo(settings)
    try:
        store = JobStore.from_settings(mongo, settings)
        await store.prepare()
        producer = make_producer(settings, client_id=service)
        await producer.start()
        try:
            yield Connections(
                settings=settings,
                topics=topics,
                store=store,
                publisher=Publisher(producer, topics),
                producer=producer,
                mongo=mongo,
            )
        finally:
            await producer.stop()
    finally:
        await mongo.close()


async def consume(
    conns: Connections,
    group_id: str,
    topics: list[str],
    expected: Callable[[str], type[Event]],
    handler: Handler,
    *,
    concurrency: int = 1,
) -> None:
    """Run ``handler`` on every event of ``topics`` as member of ``group_id``, until cancelled."""
    consumer = make_consumer(conns.settings, group_id)
    loop = EventLoop(consumer, conns.publisher, expected, handler, concurrency=concurrency)
    consumer.subscribe(topics, listener=loop.rebalance_listener())
    await consumer.start()
    log.info("consuming", extra=fields(group_id=group_id, topics=topics))
    try:
        await loop.run()
    finally:
        await consumer.stop()
