"""Producing ``job.requested`` straight to Kafka, as an app that does not call the gateway.

The event is Avro, single-object encoded (``C3 01``, the CRC-64-AVRO fingerprint of the
schema's canonical form, the binary body) with the platform's published schema, which
ships inside this package (``job_requested.avsc``). The platform applies the same rules as
at its HTTP door: an unknown app or user, or bad data, ends the job as ``dead`` with the
reason, and the administrators are alerted. Keyed by job id; the trace id travels in the
``X-Trace-Id`` header. Needs the ``kafka`` extra (confluent-kafka, fastavro).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from functools import cache
from importlib.resources import files
from io import BytesIO
from typing import Any, Self

import confluent_kafka
import fastavro
import fastavro.schema

TOPIC = "job.requested"
# The Kafka header the platform reads the trace id from (jobplane.logs.TRACE_HEADER).
TRACE_HEADER = "trace_id"
MARKER = b"\xc3\x01"


@cache
def _schema() -> tuple[Any, bytes]:
    """The parsed published schema and its fingerprint (8 bytes, wire order)."""
    raw = json.loads(files("jobplane_client").joinpath("job_requested.avsc").read_text())
    parsed = fastavro.parse_schema(raw)
    canonical = fastavro.schema.to_parsing_canonical_form(parsed)
    return parsed, bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))


def encode_job_requested(record: dict[str, Any]) -> bytes:
    """A ``job.requested`` record as the platform reads it."""
    parsed, fingerprint = _schema()
    body = BytesIO()
    fastavro.schemaless_writer(body, parsed, record)
    return MARKER + fingerprint + body.getvalue()


def job_requested(
    app_id: str,
    user_id: str,
    job_type: str,
    payload: dict[str, Any],
    *,
    job_id: str | None = None,
    timeout_seconds: int | None = None,
    trace_id: str | None = None,
) -> dict[str, Any]:
    """The record of a new job (attempt 1). ``job_id``: yours to choose, unique; sending
    the same job id again is harmless (the platform keeps the first)."""
    return {
        "event_id": uuid.uuid4().hex,
        "job_id": job_id or uuid.uuid4().hex,
        "app_id": app_id,
        "user_id": user_id,
        "attempt": 1,
        "occurred_at": datetime.now(UTC),
        "trace_id": trace_id or uuid.uuid4().hex,
        "job_type": job_type,
        "payload": json.dumps(payload, ensure_ascii=False),
        "timeout_seconds": timeout_seconds,
    }


class JobRequestProducer:
    """Submits jobs by producing ``job.requested`` (idempotent producer, acks from all
    replicas). ``topic_prefix``: the platform's TOPIC_PREFIX, if it has one."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        topic_prefix: str = "",
        config: dict[str, Any] | None = None,
    ) -> None:
        self.topic = topic_prefix + TOPIC
        self._producer = confluent_kafka.Producer(
            {
                "bootstrap.servers": bootstrap_servers,
                "enable.idempotence": True,
                "acks": "all",
                **(config or {}),
            }
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()

    def send(
        self,
        app_id: str,
        user_id: str,
        job_type: str,
        payload: dict[str, Any],
        *,
        job_id: str | None = None,
        timeout_seconds: int | None = None,
    ) -> str:
        """Queue the event; returns the job id. :meth:`flush` waits for Kafka's acks."""
        record = job_requested(
            app_id, user_id, job_type, payload, job_id=job_id, timeout_seconds=timeout_seconds
        )
        self._producer.produce(
            self.topic,
            encode_job_requested(record),
            key=record["job_id"].encode(),
            headers=[(TRACE_HEADER, record["trace_id"].encode())],
        )
        self._producer.poll(0)
        job_id_sent: str = record["job_id"]
        return job_id_sent

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until Kafka has every event queued; RuntimeError if some are left."""
        left = self._producer.flush(timeout)
        if left:
            raise RuntimeError(f"Kafka did not take {left} event(s) within {timeout} s")

    async def aflush(self, within_seconds: float = 30.0) -> None:
        """:meth:`flush` without blocking the event loop."""
        await asyncio.to_thread(self.flush, within_seconds)
