"""Announcing what was just stored: publish the event and wait a bounded time for the ack.

The write before the publish set the job's ``announce_due_at`` (the outbox): an event that
Kafka does not acknowledge in time is not lost, the relay (jobplane_gateway.relay)
publishes it once it is overdue. So a request never fails for want of an ack; a record the
producer still sends after the wait gave up is a duplicate, which every consumer tolerates.

For the same reason a submit does not wait for the ack at all (``announce_soon``): the job
is durable once stored, so the ack would only add Kafka's round trip to the answer. The
ack is awaited in the background, a missing one logged as ever, and a stopping gateway
waits for those still out (``drain``) before its producer closes.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from jobplane.events import Event
from jobplane.kafka import KafkaError, Publisher, error_cause
from jobplane.logs import fields
from jobplane.topics import Topics

log = logging.getLogger(__name__)

# What a failed publish may raise: Kafka's own errors, the wait running out, a socket error.
PUBLISH_ERRORS = (TimeoutError, KafkaError, OSError)

# The cause of the outage lines (rate-limited per cause by jobplane.logs.RepeatFilter).
PUBLISH_CAUSE = "gateway.publish"

# Announcements whose ack is awaited in the background (referenced until done).
_awaiting_ack: set[asyncio.Task[bool]] = set()


async def drain(timeout_seconds: float) -> None:
    """Wait, at most ``timeout_seconds``, for the acks awaited in the background."""
    if _awaiting_ack:
        await asyncio.wait(set(_awaiting_ack), timeout=timeout_seconds)


@dataclass(frozen=True, slots=True)
class EventBus:
    publisher: Publisher
    topics: Topics
    timeout_seconds: float

    async def announce(self, topic: str, event: Event, encoded: bytes | None = None) -> bool:
        """Publish ``event`` (``encoded``: its bytes, if at hand) and wait for the ack, at most
        ``timeout_seconds``. False when it did not come: the event is owed in the store, the
        relay will publish it."""
        try:
            await asyncio.wait_for(
                self.publisher.publish(topic, event, encoded), self.timeout_seconds
            )
        except PUBLISH_ERRORS as exc:
            log.warning(
                "event not acknowledged; the outbox relay will publish it",
                extra=fields(
                    cause=PUBLISH_CAUSE,
                    topic=topic,
                    event=type(event).__name__,
                    error=error_cause(exc),
                ),
            )
            return False
        # Passes RepeatFilter only after an outage was logged: the "back" line.
        log.info("events acknowledged", extra=fields(recovered=PUBLISH_CAUSE))
        return True

    def announce_soon(self, topic: str, event: Event, encoded: bytes | None = None) -> None:
        """``announce`` without waiting for it: for an event the store owes already."""
        task = asyncio.create_task(self.announce(topic, event, encoded))
        _awaiting_ack.add(task)
        task.add_done_callback(_awaiting_ack.discard)
