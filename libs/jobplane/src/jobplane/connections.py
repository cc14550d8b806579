"""Everything a service connects to, opened and closed in one place."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from pymongo import AsyncMongoClient

from jobplane.config import CommonSettings
from jobplane.events import Event
from jobplane.kafka import (
    AsyncProducer,
    EventLoop,
    Handler,
    Publisher,
    make_consumer,
    make_producer,
)
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
    producer: AsyncProducer
    mongo: AsyncMongoClient[Document]


@asynccontextmanager
async def connect(settings: CommonSettings, service: str) -> AsyncIterator[Connections]:
    """Create the topics and indexes (idempotent), then open the store and a producer.

    On the way out the producer delivers what it holds (at most the delivery timeout)."""
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
            await producer.stop(settings.kafka_delivery_timeout_seconds)
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
    transient: tuple[type[BaseException], ...] = (),
    ordered: bool = False,
    not_before: Callable[[Event], datetime | None] | None = None,
) -> None:
    """Run ``handler`` on every event of ``topics`` as member of ``group_id``, until
    cancelled; then stop cleanly (see EventLoop.run)."""
    loop = EventLoop(
        make_consumer(conns.settings, group_id),
        conns.publisher,
        expected,
        handler,
        concurrency=concurrency,
        settings=conns.settings,
        transient=transient,
        ordered=ordered,
        not_before=not_before,
    )
    log.info("consuming", extra=fields(group_id=group_id, topics=topics))
    await loop.run(topics)
