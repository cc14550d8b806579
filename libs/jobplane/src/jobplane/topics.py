"""Topic names and their creation at start-up."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from jobplane.config import CommonSettings
from jobplane.kafka_client import client_callbacks

RETRY_TIERS = 5

# Events are kept a week so that an operator can replay or inspect them after an incident.
_RETENTION_MS = str(7 * 24 * 3600 * 1000)


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str = ""

    @property
    def requested(self) -> str:
        return f"{self.prefix}job.requested"

    @property
    def failed(self) -> str:
        return f"{self.prefix}job.failed"

    @property
    def completed(self) -> str:
        return f"{self.prefix}job.completed"

    @property
    def dead(self) -> str:
        return f"{self.prefix}job.dead"

    def retry(self, tier: int) -> str:
        if not 1 <= tier <= RETRY_TIERS:
            raise ValueError(f"retry tier must be 1..{RETRY_TIERS}, got {tier}")
        return f"{self.prefix}job.retry.{tier}"

    @property
    def retries(self) -> list[str]:
        return [self.retry(tier) for tier in range(1, RETRY_TIERS + 1)]

    def all(self) -> list[str]:
        return [self.requested, self.failed, *self.retries, self.completed, self.dead]

    def tier_of(self, topic: str) -> int:
        """The retry tier a `job.retry.N` topic name stands for."""
        if topic not in self.retries:
            raise ValueError(f"{topic!r} is not a retry topic")
        return int(topic.rsplit(".", 1)[1])


def admin_client(bootstrap_servers: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap_servers, **client_callbacks("admin")})


async def list_topics(admin: AdminClient, wait_s: float = 10.0) -> set[str]:
    metadata = await asyncio.to_thread(admin.list_topics, timeout=wait_s)
    return set(metadata.topics)


async def delete_topics(bootstrap_servers: str, prefix: str) -> None:
    """Delete every topic whose name starts with ``prefix`` (tests and benchmarks)."""
    admin = admin_client(bootstrap_servers)
    ours = [name for name in await list_topics(admin) if name.startswith(prefix)]
    if ours:
        futures = admin.delete_topics(ours, operation_timeout=30)
        await asyncio.gather(
            *(asyncio.wrap_future(f) for f in futures.values()), return_exceptions=True
        )


async def ensure_topics(settings: CommonSettings) -> Topics:
    """Create every Jobplane topic with explicit settings; existing topics are left alone."""
    topics = Topics(settings.topic_prefix)
    admin = admin_client(settings.kafka_bootstrap_servers)
    existing = await list_topics(admin)
    missing = [
        NewTopic(
            name,
            num_partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication_factor,
            config={
                "retention.ms": _RETENTION_MS,
                "min.insync.replicas": "1",
                "cleanup.policy": "delete",
            },
        )
        for name in topics.all()
        if name not in existing
    ]
    if missing:
        futures = admin.create_topics(missing, operation_timeout=30)
        for future in futures.values():
            try:
                await asyncio.wrap_future(future)
            except KafkaException as exc:
                # Another service instance may create them at the same moment.
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
    return topics
