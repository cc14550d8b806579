"""Publishing an event before answering: no ack from Kafka means 503, never a silent loss."""

from __future__ import annotations

import logging

from aiokafka.errors import KafkaError
from fastapi import HTTPException, status
from jobplane.events import Event
from jobplane.kafka import Publisher
from jobplane.logs import fields

log = logging.getLogger(__name__)


async def publish_or_503(publisher: Publisher, topic: str, event: Event) -> None:
    try:
        await publisher.publish(topic, event)
    except (TimeoutError, KafkaError, OSError) as exc:
        log.error(
            "publish failed",
            extra=fields(topic=topic, event=type(event).__name__, error=repr(exc)),
        )
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail="the event bus did not acknowledge the event; retry the same request",
            headers={"Retry-After": "1"},
        ) from exc
