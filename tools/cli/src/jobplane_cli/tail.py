"""`jobplane tail TOPIC`: the events on a Jobplane topic, decoded from Avro, as they come."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import confluent_kafka
from jobplane import codec
from jobplane.config import CommonSettings
from jobplane.events import Event, to_record
from jobplane.kafka import consumer_config
from jobplane.topics import Topics

# The topics of an unprefixed platform (a prefix is added in front of these).
TOPIC_NAMES = tuple(Topics().all())


@dataclass(frozen=True)
class Line:
    """One record of the topic: where it is, and the event (or why it could not be read)."""

    topic: str
    partition: int
    offset: int
    key: str | None
    event: Event | None
    error: str | None = None

    def as_json(self) -> str:
        body: dict[str, Any] = {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "key": self.key,
        }
        if self.event is not None:
            body["type"] = type(self.event).__name__
            body["event"] = to_record(self.event)
        else:
            body["error"] = self.error
        return json.dumps(body, default=_json_default, ensure_ascii=False)


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def decode_record(topic: str, partition: int, offset: int, key: bytes | None, value: bytes) -> Line:
    name = key.decode(errors="replace") if key is not None else None
    try:
        return Line(topic, partition, offset, name, codec.decode(value, Event))
    except codec.DecodeError as exc:
        return Line(topic, partition, offset, name, None, exc.reason)


def follow(
    bootstrap: str,
    topic: str,
    *,
    from_beginning: bool,
    stop: Callable[[], bool],
    poll_seconds: float = 0.5,
) -> Iterator[Line]:
    """The topic's records as they arrive (or from its start), until ``stop()`` holds.

    A consumer group of its own (random), committing nothing: tailing never moves the
    services' offsets."""
    settings = CommonSettings(kafka_bootstrap_servers=bootstrap)
    config = {
        **consumer_config(settings, f"jobplane-cli-tail-{uuid.uuid4().hex[:8]}"),
        "auto.offset.reset": "earliest" if from_beginning else "latest",
    }
    consumer = confluent_kafka.Consumer(config)
    try:
        consumer.subscribe([topic])
        while not stop():
            message = consumer.poll(poll_seconds)
            if message is None or message.error() is not None:
                continue
            yield decode_record(
                message.topic() or topic,
                message.partition() or 0,
                message.offset() or 0,
                message.key(),
                message.value() or b"",
            )
    finally:
        consumer.close()
