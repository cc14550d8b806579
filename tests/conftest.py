"""Fixtures shared by the whole suite.

`infra` gives the servers the tests talk to. By default it starts the local infrastructure
(Kafka, the store, SMTP sink; see `jobplane-local`) once per run, reusing what already runs.
Point the tests at other servers with environment variables, per server:

    KAFKA_BOOTSTRAP_SERVERS=host:9092
    MONGODB_URI=mongodb://host:27017/
    SMTP_HOST=host SMTP_PORT=1025 SMTP_SINK_DIR=/path/to/mailbox

Only tests that request `infra` (directly or through another fixture) need the servers.

`topics`, `store` and `publisher` are built from a `settings` fixture (a `CommonSettings`),
which each test directory defines for the service it tests.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from jobplane.config import CommonSettings
from jobplane.kafka import Publisher, make_producer
from jobplane.store import JobStore
from jobplane.store import connect as connect_mongo
from jobplane.topics import Topics, delete_topics, ensure_topics
from jobplane_local import LocalInfraError, Mailbox
from jobplane_local.testing import Infra, infra_from_env
from pymongo import AsyncMongoClient, MongoClient
from pymongo.asynchronous.database import AsyncDatabase


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@pytest.fixture(scope="session")
def infra() -> Infra:
    """The Kafka, MongoDB-compatible and SMTP servers (started locally unless given by env)."""
    try:
        return infra_from_env(log=_log)
    except LocalInfraError as exc:
        problem = str(exc)
    pytest.fail(f"cannot start the local infrastructure: {problem}", pytrace=False)


def _short_id() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def unique_id() -> str:
    """A short random string (8 hex digits), new for every test."""
    return _short_id()


@pytest.fixture
async def topic_prefix(infra: Infra) -> AsyncIterator[str]:
    """A per-test prefix for Kafka topic names, e.g. `t1a2b3c4d.`; its topics are deleted
    after the test, so that a long suite does not pile partitions up in the broker."""
    prefix = f"t{_short_id()}."
    yield prefix
    await delete_topics(infra.kafka_bootstrap, prefix)


@pytest.fixture
def mongo_db_name(infra: Infra) -> Iterator[str]:
    """A per-test database name; the database is dropped after the test."""
    name = f"test_{_short_id()}"
    yield name
    client: MongoClient[dict[str, Any]] = MongoClient(infra.mongodb_uri)
    try:
        client.drop_database(name)
    finally:
        client.close()


@pytest.fixture
async def mongo_client(infra: Infra) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    """A PyMongo async client connected to `infra.mongodb_uri`, closed after the test."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        infra.mongodb_uri, serverSelectionTimeoutMS=10_000
    )
    yield client
    await client.close()


@pytest.fixture
def mongo_db(
    mongo_client: AsyncMongoClient[dict[str, Any]], mongo_db_name: str
) -> AsyncDatabase[dict[str, Any]]:
    """The per-test database `mongo_db_name` (dropped after the test)."""
    return mongo_client[mongo_db_name]


@pytest.fixture
def mailbox(infra: Infra) -> Mailbox:
    """The SMTP sink's mailbox. It is shared by all tests: filter by recipient or subject."""
    return Mailbox(infra.mail_dir)


@pytest.fixture
async def topics(settings: CommonSettings) -> Topics:
    """The per-test topics of `settings`, created."""
    return await ensure_topics(settings)


@pytest.fixture
async def store(settings: CommonSettings) -> AsyncIterator[JobStore]:
    """A job store on the per-test database of `settings`, with its indexes."""
    client = connect_mongo(settings)
    try:
        job_store = JobStore.from_settings(client, settings)
        await job_store.prepare()
        yield job_store
    finally:
        await client.close()


@pytest.fixture
async def publisher(settings: CommonSettings, topics: Topics) -> AsyncIterator[Publisher]:
    """A publisher to the per-test topics, over a started producer."""
    producer = make_producer(settings, "test-producer")
    await producer.start()
    try:
        yield Publisher(producer, topics)
    finally:
        await producer.stop()
