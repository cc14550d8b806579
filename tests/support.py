"""Helpers shared by the tests: free ports, background tasks, polling and reading topics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import confluent_kafka
import uvicorn
from jobplane import codec
from jobplane.config import CommonSettings
from jobplane.events import E, Event, JobRequested
from jobplane.kafka_client import BrokerWatch, TopicPartition, committed_metadata
from jobplane.logs import new_trace_id


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on (right now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextlib.asynccontextmanager
async def serve_http(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app (with its lifespan) by uvicorn on a free port of 127.0.0.1; yields
    its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                await task
                raise RuntimeError("the HTTP server stopped at start-up")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@contextlib.asynccontextmanager
async def running(coro: Coroutine[Any, Any, None]) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``coro`` as a task for the block; cancel it after, re-raising what it raised."""
    task: asyncio.Task[None] = asyncio.create_task(coro)
    await asyncio.sleep(0)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def eventually(
    check: Callable[[], Awaitable[object]],
    timeout: float = 20.0,
    describe: Callable[[], str] = lambda: "condition never held",
    interval: float = 0.1,
) -> None:
    """Await ``check()`` every ``interval`` s until it is truthy; fail with ``describe()``
    once ``timeout`` s have passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(describe())
        await asyncio.sleep(interval)


def of_job(job_id: str) -> Callable[[Event], bool]:
    """A ``where`` for `read_events`: the events of ``job_id``."""
    return lambda event: event.job_id == job_id


async def read_events(
    settings: CommonSettings,
    topic: str,
    cls: type[E],
    *,
    key: str | None = None,
    where: Callable[[E], bool] = lambda _: True,
    until: Callable[[list[E]], bool] | None = None,
    timeout: float = 30.0,
    settle: float = 0.0,
) -> list[E]:
    """Events of ``topic`` (on the servers of ``settings``, with its partition count) from the
    start, in offset order per partition: those keyed ``key`` (when given; others are not
    even decoded) for which ``where`` holds. Only committed events (read_committed).

    Without ``until``, the events there are now. With it, reads on until ``until(events)``
    holds (failing after ``timeout`` s), then ``settle`` s more.
    """
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    tps = [
        confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
        for p in range(settings.topic_partitions)
    ]
    events: list[E] = []

    def poll(timeout_s: float) -> None:
        for message in consumer.consume(500, timeout_s):
            if message.error() is not None:
                continue
            if key is not None and message.key() != key.encode():
                continue
            event = codec.decode(message.value() or b"", cls)
            if where(event):
                events.append(event)

    try:
        consumer.assign(tps)
        if until is None:
            ends = {
                tp.partition: (await asyncio.to_thread(consumer.get_watermark_offsets, tp, 10))[1]
                for tp in tps
            }

            def behind() -> bool:
                positions = consumer.position(
                    [confluent_kafka.TopicPartition(topic, p) for p in ends]
                )
                return any(
                    max(position.offset, 0) < ends[position.partition]
                    and ends[position.partition] > 0
                    for position in positions
                )

            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            # (A transaction marker at the end may keep the position short of the end.)
            while behind() and loop.time() < deadline:
                await asyncio.to_thread(poll, 0.2)
            return events
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not until(events):
            if loop.time() > deadline:
                raise AssertionError(f"timed out on {topic}; got {events}")
            await asyncio.to_thread(poll, 0.1)
        end_at = loop.time() + settle
        while loop.time() < end_at:
            await asyncio.to_thread(poll, 0.1)
        return events
    finally:
        await asyncio.to_thread(consumer.close)


async def committed(settings: CommonSettings, group_id: str, topic: str) -> dict[int, int]:
    """The committed offset per partition of ``topic`` for ``group_id`` (absent: none)."""
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": group_id}
    )
    try:
        found = await asyncio.to_thread(
            committed_metadata,
            consumer,
            [TopicPartition(topic, p) for p in range(settings.topic_partitions)],
            10,
        )
    finally:
        await asyncio.to_thread(consumer.close)
    return {tp.partition: offset for tp, (offset, _metadata) in found.items()}


async def produce_raw(
    settings: CommonSettings,
    topic: str,
    value: bytes,
    *,
    key: bytes | None = None,
    partition: int | None = None,
    copies: int = 1,
) -> None:
    """Produce ``value`` as an outside producer would (idempotent, acks=all)."""
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": settings.kafka_bootstrap_servers, "enable.idempotence": True}
    )
    for _ in range(copies):
        producer.produce(topic, value, key=key, partition=-1 if partition is None else partition)
    left = await asyncio.to_thread(producer.flush, 30)
    assert left == 0, "Kafka did not take the events"


def job_requested(
    app_id: str,
    job_id: str,
    *,
    payload: dict[str, Any] | None = None,
    attempt: int = 1,
    timeout_seconds: int | None = None,
    user_id: str = "user-1",
) -> JobRequested:
    return JobRequested(
        job_id=job_id,
        app_id=app_id,
        user_id=user_id,
        attempt=attempt,
        trace_id=new_trace_id(),
        job_type="thumbnail",
        payload=json.dumps(payload if payload is not None else {"size": [64, 64]}),
        timeout_seconds=timeout_seconds,
    )


# The statistics of a librdkafka client that a broker in controlled shutdown left with no
# broker (only the logical coordinator): jobplane.kafka_client.BrokerWatch.
NO_BROKER = json.dumps(
    {"type": "consumer", "brokers": {"GroupCoordinator": {"source": "logical", "state": "INIT"}}}
)


def lose_every_broker(watch: BrokerWatch) -> None:
    """What two statistics reports of a client without brokers tell its watch."""
    watch(NO_BROKER)
    watch(NO_BROKER)


async def until_replaced(current: Callable[[], BrokerWatch]) -> None:
    """Tell the client's watch it lost every broker until the client is replaced (it gets a
    new watch): the client's own reports, every 2 s, say otherwise in between."""
    first = current()

    async def replaced() -> bool:
        if current() is first:
            lose_every_broker(first)
            return False
        return True

    await eventually(replaced, 10, lambda: "the client was not replaced")
