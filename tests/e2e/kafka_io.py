"""Reading and writing the platform's topics from a test, as an outside app would."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any, TypeVar

import fastavro
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from jobplane import codec
from jobplane.events import Event

E = TypeVar("E", bound=Event)

# What the platform fixture creates its topics with.
PARTITIONS = 3

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


async def read_events(
    bootstrap: str, topic: str, cls: type[E], job_id: str, partition_count: int = PARTITIONS
) -> list[E]:
    """Every event of ``job_id`` on ``topic`` so far, in offset order per partition."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(partition_count)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        found: list[E] = []
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                found += [codec.decode(r.value, cls) for r in records if r.key == job_id.encode()]
        return found
    finally:
        await consumer.stop()


def single_object_encode(schema_file: str, record: dict[str, Any]) -> bytes:
    """Avro single-object encoding with fastavro alone, as schemas/README.md describes it."""
    schema = json.loads((SCHEMAS / schema_file).read_text())
    parsed = fastavro.parse_schema(schema)
    canonical = fastavro.schema.to_parsing_canonical_form(parsed)
    # fastavro prints the fingerprint's bytes in wire order (little-endian), as hex.
    fingerprint = bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))
    body = BytesIO()
    fastavro.schemaless_writer(body, parsed, record)
    return b"\xc3\x01" + fingerprint + body.getvalue()


def job_requested_record(app_id: str, user_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": uuid.uuid4().hex,
        "job_id": uuid.uuid4().hex,
        "app_id": app_id,
        "user_id": user_id,
        "attempt": 1,
        "occurred_at": datetime.now(UTC),
        "trace_id": uuid.uuid4().hex,
        "job_type": "thumbnail",
        "payload": json.dumps(payload),
        "timeout_seconds": None,
    }


async def produce(bootstrap: str, topic: str, key: str, value: bytes, copies: int = 1) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for _ in range(copies):
            await producer.send_and_wait(topic, key=key.encode(), value=value)
    finally:
        await producer.stop()
