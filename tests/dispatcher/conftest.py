"""Fixtures for the dispatcher's tests against the real local Kafka and store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from jobplane import codec
from jobplane.events import E, JobRequested
from jobplane.kafka import make_producer
from jobplane.logs import TRACE_HEADER
from jobplane.store import JobStore, User
from jobplane.topics import Topics
from jobplane_dispatcher.config import Settings
from jobplane_dispatcher.main import serve
from jobplane_local.testing import Infra

from tests.support import committed, read_events, running

from .http_stub import StubBackend, stub_backend


@pytest.fixture
def settings(infra: Infra, topic_prefix: str, mongo_db_name: str, unique_id: str) -> Settings:
    return Settings(
        kafka_bootstrap_servers=infra.kafka_bootstrap,
        mongodb_uri=infra.mongodb_uri,
        topic_prefix=topic_prefix,
        topic_partitions=3,
        mongodb_database=mongo_db_name,
        group_id=f"test-dispatcher-{unique_id}",
        gateway_public_url="http://gateway.test:8000",
        connect_timeout_seconds=2,
        request_timeout_seconds=5,
        deadline_check_interval_seconds=0.2,
        # A claim left by a dispatcher that died is taken over after this long.
        claim_lease_seconds=1.0,
    )


@pytest.fixture
async def backend() -> AsyncIterator[StubBackend]:
    async with stub_backend() as stub:
        yield stub


@pytest.fixture
async def dispatcher(settings: Settings, topics: Topics) -> AsyncIterator[None]:
    """The dispatcher service running as a task against the per-test topics and database."""
    async with running(serve(settings)):
        yield


class Kafka:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)

    async def produce(self, topic: str, *events: JobRequested) -> None:
        producer = make_producer(self.settings, client_id="test-producer")
        await producer.start()
        try:
            for event in events:
                await producer.send_and_wait(
                    topic,
                    key=event.job_id.encode(),
                    value=codec.encode(event),
                    headers=[(TRACE_HEADER, event.trace_id.encode())],
                )
        finally:
            await producer.stop()

    async def read(
        self,
        topic: str,
        cls: type[E],
        *,
        until: Callable[[list[E]], bool],
        timeout: float = 30.0,
        settle: float = 0.0,
    ) -> list[E]:
        """Events of ``topic`` from the start, until ``until`` holds (then ``settle`` s more)."""
        return await read_events(
            self.settings, topic, cls, until=until, timeout=timeout, settle=settle
        )

    async def committed_total(self, topic: str) -> int:
        """How many events of ``topic`` the dispatcher's group has committed (all partitions)."""
        offsets = await committed(self.settings, self.settings.group_id, topic)
        return sum(offsets.values())

    async def wait_committed(self, topic: str, total: int, timeout: float = 30.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (done := await self.committed_total(topic)) < total:
            if loop.time() > deadline:
                raise AssertionError(f"only {done} of {total} events committed on {topic}")
            await asyncio.sleep(0.2)


@pytest.fixture
def kafka(settings: Settings) -> Kafka:
    return Kafka(settings)


async def register_app(
    store: JobStore,
    app_id: str,
    backend_url: str,
    *,
    max_concurrency: int = 16,
    default_timeout_seconds: float = 3600,
    users: tuple[str, ...] = ("user-1",),
) -> None:
    """Register the app (as an administrator would) and its ``users``."""
    await store.create_app(
        app_id=app_id,
        backend_url=backend_url,
        default_timeout_seconds=default_timeout_seconds,  # type: ignore[arg-type]
        admin_emails=["ops@example.test"],
        api_key_hash="0" * 64,
        max_concurrency=max_concurrency,
    )
    for user_id in users:
        await store.upsert_user(User(app_id, user_id, f"{user_id}@{app_id}.example.test", "en"))
