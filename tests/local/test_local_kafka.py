"""The local Kafka is a real broker: idempotent producer, consumer groups, transactions."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from jobplane_local.testing import Infra


async def _create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, replication_factor=1)])
    finally:
        await admin.close()


async def _consume(consumer: AIOKafkaConsumer, until: bytes) -> list[bytes]:
    """Values read until (and including) `until`."""
    values: list[bytes] = []
    async with asyncio.timeout(60):
        while until not in values:
            batches = await consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                values.extend(m.value for m in messages)
    return values


async def test_idempotent_producer_and_consumer_group(infra: Infra, topic_prefix: str) -> None:
    topic = f"{topic_prefix}smoke"
    await _create_topic(infra.kafka_bootstrap, topic, partitions=2)

    producer = AIOKafkaProducer(
        bootstrap_servers=infra.kafka_bootstrap, enable_idempotence=True, acks="all"
    )
    await producer.start()
    try:
        for i in range(6):
            await producer.send_and_wait(topic, key=f"job-{i}".encode(), value=f"v{i}".encode())
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=infra.kafka_bootstrap,
        group_id=f"{topic_prefix}group",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        values: list[bytes] = []
        async with asyncio.timeout(60):
            while len(values) < 6:
                batches = await consumer.getmany(timeout_ms=500)
                for messages in batches.values():
                    values.extend(m.value for m in messages)
        await consumer.commit()
        committed = [await consumer.committed(tp) for tp in consumer.assignment()]
    finally:
        await consumer.stop()

    assert sorted(values) == [f"v{i}".encode() for i in range(6)]
    assert sum(offset or 0 for offset in committed) == 6  # the group's offsets are stored


async def test_transactions_read_committed(infra: Infra, topic_prefix: str) -> None:
    topic = f"{topic_prefix}tx"
    await _create_topic(infra.kafka_bootstrap, topic, partitions=1)

    producer = AIOKafkaProducer(
        bootstrap_servers=infra.kafka_bootstrap, transactional_id=f"{topic_prefix}producer"
    )
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(topic, b"committed")
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"aborted")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send_and_wait(topic, b"end")
    finally:
        await producer.stop()

    seen: dict[str, list[bytes]] = {}
    for isolation in ("read_committed", "read_uncommitted"):
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=infra.kafka_bootstrap,
            group_id=f"{topic_prefix}{isolation}",
            auto_offset_reset="earliest",
            isolation_level=isolation,
        )
        await consumer.start()
        try:
            seen[isolation] = await _consume(consumer, until=b"end")
        finally:
            await consumer.stop()

    assert seen["read_committed"] == [b"committed", b"end"]
    assert seen["read_uncommitted"] == [b"committed", b"aborted", b"end"]
