"""The raw floor under the pipeline: produce N messages to one topic, consume them in a group.

The producer is configured like the services' (idempotent, ``acks=all``, ``linger_ms=2``) and
the consumer like theirs (a consumer group, ``read_committed``, offsets committed by hand
after each batch). Messages are sent with the same bounded concurrency as the pipeline's
HTTP client, each with its send time, so produce→consume latency is measured per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.stats import latency_figures

# Roughly the size of an Avro job.requested event with a small payload.
_PADDING = b"x" * 300


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name=topic, num_partitions=partitions, replication_factor=1)]
        )
    finally:
        await admin.close()


async def run_baseline(
    bootstrap: str, topic: str, group_id: str, *, messages: int, concurrency: int, wait_s: float
) -> dict[str, float]:
    """One baseline run on a fresh ``topic``; figures keyed like the report prints them."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=2
    )
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_poll_records=500,
    )
    await producer.start()
    await consumer.start()
    received: dict[bytes, float] = {}  # key -> produce→consume latency (s)
    last_consumed = 0.0
    all_in = asyncio.Event()

    async def consume() -> None:
        nonlocal last_consumed
        while True:
            batches = await consumer.getmany(timeout_ms=200)
            now = time.time()
            for records in batches.values():
                for record in records:
                    (sent,) = struct.unpack_from("!d", record.value)
                    received[record.key] = now - sent
                    last_consumed = now
            if batches:
                await consumer.commit()
            if len(received) >= messages + 1:  # + the warm-up message
                all_in.set()

    consuming = asyncio.create_task(consume())
    try:
        # Warm up: wait until the group has its partitions and one message went through,
        # so the figures hold neither the group join nor the first metadata fetch.
        await producer.send_and_wait(
            topic, key=b"warm-up", value=struct.pack("!d", time.time()) + _PADDING
        )
        while b"warm-up" not in received:
            if consuming.done():
                consuming.result()
            await asyncio.sleep(0.01)

        acks: list[float] = []
        slots = asyncio.Semaphore(concurrency)

        async def send_one() -> None:
            async with slots:
                start = time.time()
                await producer.send_and_wait(
                    topic,
                    key=uuid.uuid4().hex.encode(),
                    value=struct.pack("!d", start) + _PADDING,
                )
                acks.append(time.time() - start)

        first_send = time.time()
        await asyncio.gather(*(send_one() for _ in range(messages)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_in.wait(), wait_s)
        latencies = [v for k, v in received.items() if k != b"warm-up"]
        elapsed = last_consumed - first_send
        return {
            **latency_figures("produce ack", acks),
            **latency_figures("produce→consume", latencies),
            "msgs/s": len(latencies) / elapsed if elapsed > 0 else float("nan"),
            "consumed": float(len(latencies)),
        }
    finally:
        consuming.cancel()
        await asyncio.gather(consuming, return_exceptions=True)
        await consumer.stop()
        await producer.stop()
