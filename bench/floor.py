"""The raw floor of the parts: what Kafka, the store and the SMTP sink do alone on this machine.

- Kafka: confluent-kafka directly, an idempotent producer (`acks=all`, linger 5 ms) writes N
  messages to a fresh 6-partition topic while a consumer group (`read_committed`, commits per
  batch) reads them: messages/s from the first produce to the last consume.
- Store: N job-shaped documents, then N guarded `find_one_and_update`s (the dispatcher's claim:
  `{_id, attempt, status: {$in: …}}` → dispatched), 32 at a time: updates/s.
- SMTP: N messages of the user e-mail's size over one connection: sends/s.
"""

from __future__ import annotations

import asyncio
import smtplib
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from bench.celery_app import mail
from bench.infra import HOST, BenchServers


def kafka_floor(bootstrap: str, messages: int) -> float:
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    topic = f"bench-floor-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, 6, 1)]).values():
        future.result(timeout=30)
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
         "linger.ms": 5}
    )  # fmt: skip
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"{topic}-group",
         "auto.offset.reset": "earliest", "enable.auto.commit": False,
         "isolation.level": "read_committed"}
    )  # fmt: skip
    try:
        consumer.subscribe([topic])
        producer.produce(topic, key=b"warm-up", value=b"x" * 350)
        producer.flush(30)
        warm = False
        while not warm:  # the group has its partitions once the warm-up message is read
            msg = consumer.poll(1.0)
            warm = msg is not None and not msg.error()
        value = b"x" * 350  # about an Avro job event with a small payload
        began = time.monotonic()
        for n in range(messages):
            producer.produce(topic, key=str(n).encode(), value=value)
            if n % 1000 == 0:
                producer.poll(0)
        producer.flush(60)
        received = 0
        deadline = time.monotonic() + 120
        while received < messages and time.monotonic() < deadline:
            batch = consumer.consume(500, 1.0)
            received += sum(1 for m in batch if not m.error())
            if batch:
                consumer.commit(asynchronous=True)
        return received / (time.monotonic() - began)
    finally:
        consumer.close()
        producer.flush(10)
        for future in admin.delete_topics([topic]).values():
            future.exception(timeout=30)


async def store_floor(uri: str, updates: int, concurrency: int = 32) -> float:
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri)
    database = f"benchfloor{uuid.uuid4().hex[:8]}"
    jobs = client[database]["jobs"]
    try:
        now = datetime.now(UTC)
        ids = [uuid.uuid4().hex for _ in range(updates)]
        await jobs.insert_many(
            [{"_id": i, "status": "queued", "attempt": 1, "attempts": {}, "created_at": now,
              "payload": "{}"} for i in ids]
        )  # fmt: skip
        slots = asyncio.Semaphore(concurrency)

        async def claim(job_id: str) -> None:
            async with slots:
                await jobs.find_one_and_update(
                    {"_id": job_id, "attempt": 1, "status": {"$in": ["queued", "retry_scheduled"]}},
                    {"$set": {"status": "dispatched", "attempts.1.dispatched_at": now},
                     "$unset": {"announce_due_at": ""}},
                )  # fmt: skip

        began = time.monotonic()
        await asyncio.gather(*(claim(i) for i in ids))
        return updates / (time.monotonic() - began)
    finally:
        await client.drop_database(database)
        await client.close()


def smtp_floor(port: int, messages: int) -> float:
    message = mail("floor@bench.example.com", "floor", "thumbnail", "succeeded", '{"x": 1}')
    with smtplib.SMTP(HOST, port, local_hostname="localhost", timeout=30) as smtp:
        began = time.monotonic()
        for _ in range(messages):
            smtp.send_message(message)
        return messages / (time.monotonic() - began)


async def measure(servers: BenchServers, scale: int) -> dict[str, float]:
    return {
        "Kafka produce+consume msgs": await asyncio.to_thread(
            kafka_floor, servers.kafka_bootstrap, 20 * scale
        ),
        "store guarded updates (32 at once)": await store_floor(servers.mongodb_uri, 2 * scale),
        "SMTP sends (one connection)": await asyncio.to_thread(
            smtp_floor, servers.config.smtp_port, scale
        ),
    }
