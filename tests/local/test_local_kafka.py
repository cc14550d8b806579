"""The local Kafka is a real broker: idempotent producer, consumer groups, transactions."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from jobplane_local.config import LocalConfig
from jobplane_local.kafka import Kafka
from jobplane_local.testing import Infra


def _create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    (future,) = admin.create_topics([NewTopic(topic, partitions, 1)]).values()
    future.result(30)


def _consume(
    config: dict[str, Any], topic: str, enough: Callable[[list[bytes]], bool]
) -> tuple[Consumer, list[bytes]]:
    """A consumer of ``topic`` and the values it read until ``enough`` of them."""
    consumer = Consumer({"auto.offset.reset": "earliest", "enable.auto.commit": False, **config})
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + 60
    while not enough(values):
        assert time.monotonic() < deadline, f"timed out; got {values}"
        for message in consumer.consume(100, 0.5):
            if message.error() is None:
                values.append(message.value() or b"")
    return consumer, values


def test_idempotent_producer_and_consumer_group(infra: Infra, topic_prefix: str) -> None:
    topic = f"{topic_prefix}smoke"
    _create_topic(infra.kafka_bootstrap, topic, partitions=2)

    producer = Producer(
        {"bootstrap.servers": infra.kafka_bootstrap, "enable.idempotence": True, "acks": "all"}
    )
    for i in range(6):
        producer.produce(topic, f"v{i}".encode(), key=f"job-{i}".encode())
    assert producer.flush(30) == 0

    config = {"bootstrap.servers": infra.kafka_bootstrap, "group.id": f"{topic_prefix}group"}
    consumer, values = _consume(config, topic, lambda values: len(values) >= 6)
    try:
        consumer.commit(asynchronous=False)
        committed = consumer.committed([TopicPartition(topic, p) for p in range(2)], 10)
    finally:
        consumer.close()

    assert sorted(values) == [f"v{i}".encode() for i in range(6)]
    assert sum(max(tp.offset, 0) for tp in committed) == 6  # the group's offsets are stored


def test_transactions_read_committed(infra: Infra, topic_prefix: str) -> None:
    topic = f"{topic_prefix}tx"
    _create_topic(infra.kafka_bootstrap, topic, partitions=1)

    producer = Producer(
        {"bootstrap.servers": infra.kafka_bootstrap, "transactional.id": f"{topic_prefix}p"}
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, b"committed")
    producer.commit_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, b"aborted")
    producer.flush(30)
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, b"end")
    producer.commit_transaction(30)

    seen: dict[str, list[bytes]] = {}
    for isolation in ("read_committed", "read_uncommitted"):
        config = {
            "bootstrap.servers": infra.kafka_bootstrap,
            "group.id": f"{topic_prefix}{isolation}",
            "isolation.level": isolation,
        }
        consumer, seen[isolation] = _consume(config, topic, lambda values: b"end" in values)
        consumer.close()

    assert seen["read_committed"] == [b"committed", b"end"]
    assert seen["read_uncommitted"] == [b"committed", b"aborted", b"end"]


def test_the_broker_jvm_options_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("JOBPLANE_LOCAL_DIR", str(tmp_path))
    monkeypatch.delenv("JOBPLANE_KAFKA_JVM_OPTS", raising=False)
    argv = Kafka(LocalConfig.from_env()).command()
    # a small machine's broker by default: C1 only, the serial collector
    assert "-XX:TieredStopAtLevel=1" in argv and "-XX:+UseSerialGC" in argv
    assert argv.index("-XX:+UseSerialGC") < argv.index("kafka.Kafka")

    monkeypatch.setenv("JOBPLANE_KAFKA_JVM_OPTS", "")  # the JVM's own defaults
    argv = Kafka(LocalConfig.from_env()).command()
    assert not [arg for arg in argv if arg.startswith("-XX:")]

    monkeypatch.setenv("JOBPLANE_KAFKA_JVM_OPTS", "-XX:+UseG1GC  -XX:MaxGCPauseMillis=20")
    argv = Kafka(LocalConfig.from_env()).command()
    assert [arg for arg in argv if arg.startswith("-XX:")] == [
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
    ]
