"""Publishing an event before answering: no ack from Kafka in time means 503, never a
silent loss (the client retries; a replayed request publishes again)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from fastapi import HTTPException, status
from jobplane.events import Event
from jobplane.kafka import KafkaError, Publisher
from jobplane.logs import fields
from jobplane.topics import Topics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EventBus:
    publisher: Publisher
    topics: Topics
    timeout_seconds: float

    async def publish(self, topic: str, event: Event) -> None:
        """Publish ``event`` and wait for the ack, at most ``timeout_seconds``; else 503."""
        try:
            await asyncio.wait_for(self.publisher.publish(topic, event), self.timeout_seconds)
        except (TimeoutError, KafkaError, OSError) as exc:
            log.error(
                "publish failed",
                extra=fields(topic=topic, event=type(event).__name__, error=repr(exc)),
            )
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                detail="the event bus did not acknowledge the event: retry the same request",
                headers={"Retry-After": "1"},
            ) from exc
