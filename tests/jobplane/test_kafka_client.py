"""librdkafka's clients driven from asyncio: the watch for a client that lost every broker
(pure logic, on statistics shaped as librdkafka 2.16 writes them) and the replacement of
such a producer, against the real local Kafka."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from confluent_kafka import KafkaError as KafkaErrorCode
from jobplane.config import CommonSettings
from jobplane.events import JobRequested
from jobplane.kafka import KafkaError, Publisher, make_producer
from jobplane.kafka_client import AsyncProducer, BrokerWatch, watched_config
from jobplane.topics import Topics

from tests.support import (
    NO_BROKER,
    free_port,
    job_requested,
    read_events,
    until_replaced,
)


def statistics(**brokers: dict[str, Any]) -> str:
    return json.dumps({"name": "c#consumer-1", "type": "consumer", "brokers": brokers})


# What librdkafka reported, seen here: up, and between a stop and a re-bootstrap (a client
# left with no broker: tests.support.NO_BROKER).
UP = statistics(
    **{
        "127.0.0.1:9300/1": {"source": "learned", "state": "UP"},
        "GroupCoordinator": {"source": "logical", "state": "UP"},
    }
)
BOOTSTRAPPING = statistics(
    **{
        "127.0.0.1:9300/bootstrap": {"source": "configured", "state": "INIT"},
        "GroupCoordinator": {"source": "logical", "state": "INIT"},
    }
)


def test_a_client_without_a_broker_in_two_reports_in_a_row_lost_every_broker() -> None:
    watch = BrokerWatch()
    lost = []
    for report in (NO_BROKER, UP, NO_BROKER, NO_BROKER, BOOTSTRAPPING):
        watch(report)
        lost.append(watch.lost_every_broker)
    # One report may fall in a re-bootstrap; a bootstrap server again can connect.
    assert lost == [False, False, False, True, False]


def test_an_unreadable_report_changes_nothing_and_reports_go_on_to_the_chained() -> None:
    seen: list[str] = []
    watch = BrokerWatch(seen.append)
    watch(NO_BROKER)
    watch("not json")
    watch(NO_BROKER)
    assert watch.lost_every_broker
    assert seen == [NO_BROKER, "not json", NO_BROKER]


def test_a_watched_config_reports_at_least_every_two_seconds_to_the_watch() -> None:
    lag: list[str] = []
    config, watch = watched_config(
        {"bootstrap.servers": "b:1", "statistics.interval.ms": 10_000, "stats_cb": lag.append},
        "c",
    )
    assert config["statistics.interval.ms"] == 2000
    assert config["stats_cb"] is watch
    watch(UP)
    assert lag == [UP]  # the lag recorder of jobplane.metrics still gets the reports
    assert watched_config({"statistics.interval.ms": 500}, "c")[0]["statistics.interval.ms"] == 500


async def test_a_producer_that_lost_every_broker_is_replaced_and_delivers_again(
    settings: CommonSettings, topics: Topics
) -> None:
    producer = make_producer(settings, client_id="test-replaced")
    await producer.start()
    publisher = Publisher(producer, topics)
    try:
        await publisher.publish(topics.requested, job_requested("app", "before"))
        await until_replaced(lambda: producer.broker_watch)
        await asyncio.wait_for(
            publisher.publish(topics.requested, job_requested("app", "after")), 30
        )
    finally:
        await producer.stop(within_s=5)
    events = await read_events(
        settings, topics.requested, JobRequested, until=lambda found: len(found) == 2
    )
    assert sorted(event.job_id for event in events) == ["after", "before"]


async def test_what_a_replaced_producer_held_fails_at_once_to_be_sent_again() -> None:
    """Sends the lost producer could never deliver fail with _PURGE_QUEUE (transient: the
    sender sends again, through the new producer), rather than wait out their timeout."""
    away: dict[str, Any] = {"bootstrap.servers": f"127.0.0.1:{free_port()}"}
    producer = AsyncProducer({**away, "client.id": "test-held", "delivery.timeout.ms": 300_000})
    await producer.start()
    try:
        held = await producer.send("t", b"v", key=b"k")
        await until_replaced(lambda: producer.broker_watch)
        with pytest.raises(KafkaError) as failed:
            await asyncio.wait_for(held, 10)
        assert failed.value.args[0].code() == KafkaErrorCode._PURGE_QUEUE
    finally:
        await producer.stop(within_s=0.2)
