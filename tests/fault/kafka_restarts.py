"""Soak: stop the suite's Kafka again and again while consumer groups consume, and report
whether each group consumes again after each restart, how soon, and which clients were
replaced for having lost every broker (jobplane.kafka_client.BrokerWatch).

A stopping broker rarely leaves a client without brokers (1 client in 272 client-stops
here with librdkafka's default metadata refresh, 1 in 20 to 50 with a 10 ms one), too rarely
for a test; this loop is how it was found and how the cure was checked. It uses the fault
suite's Kafka (port 9200): do not run it beside `make chaos`.

    uv run python -m tests.fault.kafka_restarts --groups 16 --restarts 12
    uv run python -m tests.fault.kafka_restarts --metadata-refresh-ms 10  # more clients lost
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import time
from typing import Any

from jobplane.config import CommonSettings
from jobplane.events import Event, JobRequested
from jobplane.kafka import EventLoop, Publisher, Record, consumer_config, make_producer
from jobplane.kafka_client import AsyncConsumer
from jobplane.topics import Topics, delete_topics, ensure_topics

from tests.fault.processes import Infra
from tests.support import job_requested

MARKERS = 12  # events per check, spread over the partitions


class ReplacedClients(logging.Handler):
    """Counts the clients replaced (their log line), per client name."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.names: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("kafka client lost every broker"):
            self.names.append(getattr(record, "fields", {}).get("client", "?"))


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


async def soak(args: argparse.Namespace) -> int:
    infra = Infra()
    infra.start("kafka")
    bootstrap = f"127.0.0.1:{infra.config.kafka_port}"
    settings = CommonSettings(
        kafka_bootstrap_servers=bootstrap, topic_prefix=f"soak{random.randrange(10**6)}."
    )
    topics = await ensure_topics(settings)
    replaced = ReplacedClients()
    logging.getLogger("jobplane.kafka.client").addHandler(replaced)
    producer = make_producer(settings, "soak")
    await producer.start()
    publisher = Publisher(producer, topics)
    seen: list[set[str]] = [set() for _ in range(args.groups)]
    loops = [
        asyncio.create_task(consume(settings, topics, publisher, seen[g], g, args))
        for g in range(args.groups)
    ]
    stuck_after: list[int] = []
    try:
        await check_all_consume(publisher, topics, seen, "before", 60)
        for restart in range(args.restarts):
            down_s = random.uniform(*args.down)
            say(f"restart {restart}: Kafka stopped for {down_s:.0f} s")
            await asyncio.to_thread(infra.stop, "kafka")
            await asyncio.sleep(down_s)
            await asyncio.to_thread(infra.start, "kafka")
            took, missing = await check_all_consume(
                publisher, topics, seen, f"r{restart}", args.bound
            )
            say(
                f"restart {restart}: "
                + (f"every group consumes again after {took:.1f} s" if not missing else
                   f"groups {missing} consume nothing {args.bound:.0f} s after Kafka is back")
            )  # fmt: skip
            if missing:
                stuck_after.append(restart)
    finally:
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        await producer.stop(5)
        await delete_topics(bootstrap, settings.topic_prefix)
        await asyncio.to_thread(infra.stop, "kafka")
    say(
        f"{args.restarts} restarts x {args.groups} groups: clients replaced {len(replaced.names)}"
        f" ({', '.join(sorted(set(replaced.names))) or 'none'}); restarts with a group that"
        f" did not consume again: {stuck_after or 'none'}"
    )
    return 1 if stuck_after else 0


async def consume(
    settings: CommonSettings,
    topics: Topics,
    publisher: Publisher,
    seen: set[str],
    group: int,
    args: argparse.Namespace,
) -> None:
    async def handle(event: Event, record: Record) -> None:
        seen.add(event.job_id)

    config: dict[str, Any] = consumer_config(settings, f"{settings.topic_prefix}group{group}")
    if args.metadata_refresh_ms:
        config["topic.metadata.refresh.interval.ms"] = args.metadata_refresh_ms
    loop = EventLoop(
        AsyncConsumer(config), publisher, lambda _: JobRequested, handle, settings=settings
    )
    await loop.run([topics.requested])


async def check_all_consume(
    publisher: Publisher, topics: Topics, seen: list[set[str]], name: str, bound_s: float
) -> tuple[float, list[int]]:
    """Publish marker events; how long until every group has them all (or which have not,
    after ``bound_s``)."""
    ids = {f"{name}-{i}" for i in range(MARKERS)}
    began = time.monotonic()
    for job_id in ids:
        while True:  # Kafka may still be starting its listeners
            try:
                await publisher.publish(topics.requested, job_requested("soak", job_id))
                break
            except Exception:  # any failure (Kafka starting): try again
                await asyncio.sleep(0.5)
    while True:
        missing = [g for g, got in enumerate(seen) if not ids <= got]
        took = time.monotonic() - began
        if not missing or took >= bound_s:
            return took, missing
        await asyncio.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=16, help="consumer groups (default 16)")
    parser.add_argument("--restarts", type=int, default=12, help="Kafka restarts (default 12)")
    parser.add_argument(
        "--down", type=float, nargs=2, default=(28.0, 40.0), metavar=("MIN", "MAX"),
        help="seconds Kafka stays stopped, drawn between MIN and MAX (default 28 40)",
    )  # fmt: skip
    parser.add_argument(
        "--bound", type=float, default=90.0,
        help="seconds after Kafka is back within which every group must consume (default 90)",
    )  # fmt: skip
    parser.add_argument(
        "--metadata-refresh-ms", type=int, default=0,
        help="the consumers' topic.metadata.refresh.interval.ms (default: librdkafka's); "
        "10 makes a client left without brokers far likelier",
    )  # fmt: skip
    logging.basicConfig(level=logging.ERROR)
    raise SystemExit(asyncio.run(soak(parser.parse_args())))


if __name__ == "__main__":
    main()
