"""Topic names and their creation at start-up."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from jobplane.config import CommonSettings

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


async def ensure_topics(settings: CommonSettings) -> Topics:
    """Create every Jobplane topic with explicit settings; existing topics are left alone."""
    topics = Topics(settings.topic_prefix)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name=name,
                num_partitions=settings.topic_partitions,
                replication_factor=settings.topic_replication_factor,
                topic_configs={
                    "retention.ms": _RETENTION_MS,
                    "min.insync.replicas": "1",
                    "cleanup.policy": "delete",
                },
            )
            for name in topics.all()
            if name not in existing
        ]
        if missing:
            # Another service instance may create them at the same moment.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
    finally:
        await admin.close()
    return topics
