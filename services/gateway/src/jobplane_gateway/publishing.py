"""Announcing what was just stored: publish the event and wait a bounded time for the ack.

The write before the publish set the job's ``announce_due_at`` (the outbox): an event that
Kafka does not acknowledge in time is not lost, the relay (jobplane_gateway.relay)
publishes it once it is overdue. So a request never fails for want of an ack; a record the
producer still sends after the wait gave up is a duplicate, which every consumer tolerates.

For the same reason a submit does not wait for the ack at all (``announce_soon``): the job
is durable once stored, so the ack would only add Kafka's round trip to the answer. The
ack is watched from the side, a missing one logged as ever, and a stopping gateway
waits for those still out (``drain``) before its producer closes.
"""

from __future__ import annotations

import asyncio
import functools
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

# The acks of announcements watched from the side (referenced until they come or not).
_awaiting_ack: set[asyncio.Future[None]] = set()


async def drain(timeout_seconds: float) -> None:
    """Wait, at most ``timeout_seconds``, for the acks still watched."""
    if _awaiting_ack:
        await asyncio.wait(set(_awaiting_ack), timeout=timeout_seconds)


class _Outage:
    """Whether the last announcement went unacknowledged: the next ack says "back" once.

    Only then is the recovery line logged: a line per ack was dropped by the repeat filter,
    but its record was built all the same, on every submit."""

    unacknowledged = False


def _not_acknowledged(topic: str, event: Event, error: BaseException) -> None:
    _Outage.unacknowledged = True
    log.warning(
        "event not acknowledged; the outbox relay will publish it",
        extra=fields(
            cause=PUBLISH_CAUSE, topic=topic, event=type(event).__name__, error=error_cause(error)
        ),
    )


def _acknowledged() -> None:
    if _Outage.unacknowledged:
        _Outage.unacknowledged = False
        # Passes RepeatFilter after the outage was logged: the "back" line.
        log.info("events acknowledged", extra=fields(recovered=PUBLISH_CAUSE))


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
            _not_acknowledged(topic, event, exc)
            return False
        _acknowledged()
        return True

    async def announce_soon(self, topic: str, event: Event, encoded: bytes | None = None) -> None:
        """``announce`` without waiting for it: for an event the store owes already.

        No task and no ``wait_for`` per event: the ack's future is watched with a callback
        and given up after ``timeout_seconds`` by a timer (24-29 against 58-66 µs of CPU
        per announcement, of a submit's ~1.2 ms). While librdkafka's queue is full the event
        is left to the relay rather than waited for."""
        try:
            acked = await self.publisher.send(topic, event, encoded, wait_for_room=False)
        except (BufferError, *PUBLISH_ERRORS) as exc:
            _not_acknowledged(topic, event, exc)
            return
        give_up = asyncio.get_running_loop().call_later(self.timeout_seconds, acked.cancel)
        _awaiting_ack.add(acked)
        acked.add_done_callback(functools.partial(_settled, topic, event, give_up))


def _settled(
    topic: str, event: Event, give_up: asyncio.TimerHandle, acked: asyncio.Future[None]
) -> None:
    """The ack of an announcement came, failed, or was given up waiting for."""
    _awaiting_ack.discard(acked)
    give_up.cancel()
    if acked.cancelled():
        _not_acknowledged(topic, event, TimeoutError("no ack within the publish timeout"))
    elif (error := acked.exception()) is not None:
        _not_acknowledged(topic, event, error)
    else:
        _acknowledged()
