"""Announcing from the side (``announce_soon``) against real Kafka: the ack is watched, a
missing one is logged and left to the relay, and a full queue never holds a request."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from jobplane.connections import Connections
from jobplane.events import JobRequested
from jobplane.kafka import AsyncProducer, Publisher, producer_config
from jobplane_gateway import publishing
from jobplane_gateway.config import Settings
from jobplane_gateway.publishing import EventBus

from tests.support import free_port, job_requested

from .harness import Gateway

NOT_ACKNOWLEDGED = "event not acknowledged; the outbox relay will publish it"


def requested() -> JobRequested:
    return job_requested("a", uuid.uuid4().hex)


@pytest.fixture
async def unreachable_producer(settings: Settings) -> AsyncIterator[AsyncProducer]:
    """A running producer whose broker nobody listens on, with room for one message."""
    config = producer_config(
        settings.model_copy(update={"kafka_bootstrap_servers": f"127.0.0.1:{free_port()}"}),
        client_id="gateway-test-unreachable",
    )
    producer = AsyncProducer({**config, "queue.buffering.max.messages": 1})
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop(within_s=0.5)  # what it still holds fails
        await publishing.drain(1)  # and those failures are told within this test


async def test_an_acknowledged_announcement_leaves_nothing_watched(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    conns = gateway.conns
    bus = EventBus(conns.publisher, conns.topics, timeout_seconds=5.0)
    event = requested()
    await bus.announce_soon(conns.topics.requested, event)
    await publishing.drain(10)
    assert not publishing._awaiting_ack
    assert await gateway.wait_events(conns.topics.requested, JobRequested, event.job_id)
    assert NOT_ACKNOWLEDGED not in caplog.text


async def test_a_missing_ack_is_given_up_after_the_timeout_and_logged(
    conns: Connections, unreachable_producer: AsyncProducer, caplog: pytest.LogCaptureFixture
) -> None:
    bus = EventBus(Publisher(unreachable_producer, conns.topics), conns.topics, 0.3)
    began = time.monotonic()
    await bus.announce_soon(conns.topics.requested, requested())
    assert time.monotonic() - began < 0.1  # not waited for
    assert NOT_ACKNOWLEDGED not in caplog.text
    await publishing.drain(5)
    assert 0.3 <= time.monotonic() - began < 5
    assert NOT_ACKNOWLEDGED in caplog.text
    assert not publishing._awaiting_ack


async def test_a_full_queue_leaves_the_event_to_the_relay_without_waiting(
    conns: Connections, unreachable_producer: AsyncProducer, caplog: pytest.LogCaptureFixture
) -> None:
    bus = EventBus(Publisher(unreachable_producer, conns.topics), conns.topics, 10.0)
    await bus.announce_soon(conns.topics.requested, requested())  # takes the queue's one place
    began = time.monotonic()
    await bus.announce_soon(conns.topics.requested, requested())
    assert time.monotonic() - began < 0.1
    [line] = [r for r in caplog.records if r.getMessage() == NOT_ACKNOWLEDGED]
    assert line.fields["error"] == "builtins.BufferError"  # type: ignore[attr-defined]
    assert len(publishing._awaiting_ack) == 1  # the first one's ack is still watched


async def test_the_first_ack_after_an_outage_says_so_once(
    conns: Connections, unreachable_producer: AsyncProducer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=publishing.log.name)
    down = EventBus(Publisher(unreachable_producer, conns.topics), conns.topics, 0.2)
    await down.announce_soon(conns.topics.requested, requested())
    await publishing.drain(5)
    up = EventBus(conns.publisher, conns.topics, 5.0)
    for _ in range(3):
        await up.announce_soon(conns.topics.requested, requested())
    await publishing.drain(10)
    messages = [r.getMessage() for r in caplog.records if r.name == publishing.log.name]
    assert messages == [NOT_ACKNOWLEDGED, "events acknowledged"]
