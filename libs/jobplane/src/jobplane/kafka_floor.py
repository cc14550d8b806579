"""The raw floor of Jobplane's Kafka module: produce N events, then consume them in a group.

    uv run python -m jobplane.kafka_floor [--messages 20000] [--bootstrap 127.0.0.1:9092]

Uses the services' own settings (idempotent producer with acks=all; a consumer group with
read_committed, committing by hand after every fetch). Three figures, in messages/s:

- ``produce (send all, then await)``: every event enqueued, then all acks awaited — how a
  batch of events is published;
- ``produce (32 in flight, each awaited)``: 32 concurrent publishers, each awaiting its ack
  before the next — how a gateway under load publishes;
- ``consume + commit``: a fresh group reads them all, committing after every fetch without
  waiting for the broker (as the event loop's periodic commits do).

Prints one JSON line. The topic (one partition per core) is deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

from jobplane.config import CommonSettings
from jobplane.kafka import AsyncConsumer, make_consumer, make_producer
from jobplane.topics import admin_client, delete_topics

# Roughly the size of an Avro job.requested event with a small payload.
_VALUE = b"x" * 400


async def _produce_all(settings: CommonSettings, topic: str, messages: int) -> float:
    producer = make_producer(settings, "floor")
    await producer.start()
    try:
        await producer.send_and_wait(topic, _VALUE, key=b"warm-up")
        start = time.perf_counter()
        futures = [
            await producer.send(topic, _VALUE, key=uuid.uuid4().bytes) for _ in range(messages)
        ]
        await asyncio.gather(*futures)
        return messages / (time.perf_counter() - start)
    finally:
        await producer.stop()


async def _produce_each(settings: CommonSettings, topic: str, messages: int) -> float:
    producer = make_producer(settings, "floor")
    await producer.start()
    try:
        slots = asyncio.Semaphore(32)

        async def one() -> None:
            async with slots:
                await producer.send_and_wait(topic, _VALUE, key=uuid.uuid4().bytes)

        start = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(messages)))
        return messages / (time.perf_counter() - start)
    finally:
        await producer.stop()


async def _consume(settings: CommonSettings, topic: str, total: int) -> float:
    consumer: AsyncConsumer = make_consumer(settings, f"floor-{uuid.uuid4().hex}")
    await consumer.start([topic])
    try:
        first = await consumer.fetch(500, 10.0)
        start = time.perf_counter()
        seen = len(first)
        while seen < total:
            records = await consumer.fetch(500)
            seen += len(records)
            if records:
                last = records[-1]
                await consumer.commit({last.tp: last.offset + 1}, wait=False)
        return (seen - len(first)) / (time.perf_counter() - start)
    finally:
        await consumer.close()


async def measure(bootstrap: str, messages: int) -> dict[str, float]:
    from confluent_kafka.cimpl import NewTopic

    settings = CommonSettings(kafka_bootstrap_servers=bootstrap)
    prefix = f"floor-{uuid.uuid4().hex[:8]}."
    topic = f"{prefix}events"
    admin = admin_client(bootstrap)
    (created,) = admin.create_topics([NewTopic(topic, num_partitions=1)]).values()
    await asyncio.wrap_future(created)
    try:
        all_then_await = await _produce_all(settings, topic, messages)
        each_awaited = await _produce_each(settings, topic, messages)
        consumed = await _consume(settings, topic, 2 * messages + 1)
    finally:
        await delete_topics(bootstrap, prefix)
    return {
        "messages": messages,
        "produce (send all, then await) msgs/s": round(all_then_await),
        "produce (32 in flight, each awaited) msgs/s": round(each_awaited),
        "consume + commit msgs/s": round(consumed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=CommonSettings().kafka_bootstrap_servers)
    parser.add_argument("--messages", type=int, default=20_000)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.bootstrap, args.messages))))


if __name__ == "__main__":
    main()
