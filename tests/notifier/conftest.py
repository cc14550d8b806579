"""Fixtures for the notifier's tests against the real Kafka, FerretDB and an SMTP sink."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from jobplane.kafka import Publisher, make_producer
from jobplane.store import JobStore, User
from jobplane.store import connect as connect_mongo
from jobplane.topics import Topics, ensure_topics
from jobplane_local.testing import Infra
from jobplane_notifier.config import Settings


@pytest.fixture
def settings(infra: Infra, topic_prefix: str, mongo_db_name: str, unique_id: str) -> Settings:
    return Settings(
        kafka_bootstrap_servers=infra.kafka_bootstrap,
        mongodb_uri=infra.mongodb_uri,
        topic_prefix=topic_prefix,
        # One partition and one event at a time: a later event's mail proves the earlier
        # events were handled.
        topic_partitions=1,
        concurrency=1,
        mongodb_database=mongo_db_name,
        group_id=f"test-notifier-{unique_id}",
        smtp_host=infra.smtp_host,
        smtp_port=infra.smtp_port,
        smtp_timeout_seconds=5,
        mail_from="Jobplane Test <jobplane@jobplane.test>",
        admin_emails=[f"ops-{unique_id}@example.com", f"OPS-{unique_id}@example.com"],
        status_page_url="https://jobs.example.com/status/",
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
    task: asyncio.Task[None] = asyncio.create_task(coro)
    await asyncio.sleep(0)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def free_port() -> int:
    """A TCP port nobody listens on (right now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def committed(settings: Settings, topic: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(settings.group_id)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


async def register(
    store: JobStore, unique_id: str, *, language: str = "en", app_admins: list[str] | None = None
) -> tuple[str, User]:
    app_id = f"app-{unique_id}"
    await store.create_app(
        app_id=app_id,
        backend_url="http://backend.test/jobs",
        default_timeout_seconds=60,
        admin_emails=app_admins or [],
        api_key_hash="0" * 64,
        max_concurrency=4,
    )
    user = User(
        app_id=app_id,
        user_id=f"user-{unique_id}",
        email=f"user-{unique_id}@example.com",
        language=language,
    )
    await store.upsert_user(user)
    return app_id, user
