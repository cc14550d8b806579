"""Reading and writing the platform's topics from a test, as an outside app would."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import confluent_kafka
import fastavro

# What the platform fixture creates its topics with.
PARTITIONS = 3

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


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
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True}
    )
    for _ in range(copies):
        producer.produce(topic, value, key=key.encode())
    left = await asyncio.to_thread(producer.flush, 30)
    assert left == 0, "Kafka did not take the events"
