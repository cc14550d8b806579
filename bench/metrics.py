"""What a run costs: CPU and peak memory per process, store and broker commands, Kafka messages."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from typing import Any

import psutil
from pymongo import MongoClient

OPCOUNTERS = ("insert", "query", "update", "delete", "getmore", "command")


def _tree(process: psutil.Process) -> list[psutil.Process]:
    """A process and its children (Celery's prefork pool, uvicorn workers)."""
    try:
        return [process, *process.children(recursive=True)]
    except psutil.Error:
        return [process]


def cpu_seconds(process: psutil.Process) -> float:
    total = 0.0
    for p in _tree(process):
        with contextlib.suppress(psutil.Error):
            times = p.cpu_times()
            total += times.user + times.system
    return total


def rss_bytes(process: psutil.Process) -> int:
    return _rss(_tree(process))


def _rss(processes: list[psutil.Process]) -> int:
    total = 0
    for p in processes:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


class ProcessMeter:
    """CPU seconds between `start` and `stop`, and the peak RSS sampled meanwhile, per name."""

    def __init__(self, pids: Mapping[str, int], interval: float = 0.25) -> None:
        self.processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.interval = interval
        self.cpu_start: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.peak_rss: dict[str, int] = dict.fromkeys(self.processes, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def start(self) -> None:
        self.cpu_start = {name: cpu_seconds(p) for name, p in self.processes.items()}
        self._thread.start()

    def _sample(self) -> None:
        # Finding a process's children reads every process on the machine: do it once a
        # second, not at every sample (it cost the benchmark's process 8 % of a core).
        trees: dict[str, list[psutil.Process]] = {}
        ticks = 0
        while not self._stop.wait(self.interval):
            if ticks % max(1, round(1.0 / self.interval)) == 0:
                trees = {name: _tree(p) for name, p in self.processes.items()}
            ticks += 1
            for name, tree in trees.items():
                self.peak_rss[name] = max(self.peak_rss[name], _rss(tree))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        for name, p in self.processes.items():
            self.cpu[name] = cpu_seconds(p) - self.cpu_start[name]
            self.peak_rss[name] = max(self.peak_rss[name], rss_bytes(p))


def store_opcounters(uri: str) -> dict[str, int]:
    """The store server's operation counters (MongoDB's `serverStatus.opcounters`)."""
    client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        counters = client.admin.command("serverStatus").get("opcounters", {})
        return {name: int(counters.get(name, 0)) for name in OPCOUNTERS}
    finally:
        client.close()


def counter_delta(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    return {name: after.get(name, 0) - before.get(name, 0) for name in after}


def kafka_end_offsets(bootstrap: str, prefix: str) -> dict[str, int]:
    """Per topic with `prefix`, the sum of its partitions' end offsets (messages written,
    transaction markers included)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-offsets"})
    try:
        metadata = consumer.list_topics(timeout=10)
        totals: dict[str, int] = {}
        for name, topic in metadata.topics.items():
            if not name.startswith(prefix):
                continue
            totals[name] = sum(
                consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1]
                for p in topic.partitions
            )
        return totals
    finally:
        consumer.close()


def redis_commands(url: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    try:
        info: dict[str, Any] = client.info("stats")
        return int(info["total_commands_processed"])
    finally:
        client.close()
