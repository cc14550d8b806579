"""Settings every Jobplane service shares, read from environment variables.

Each service extends :class:`CommonSettings` with its own fields, so one typed object per
service holds all of its configuration.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    # Lets several deployments (or test runs) share one Kafka cluster without seeing
    # each other's events: every topic name is prefixed with it.
    topic_prefix: str = ""
    topic_partitions: int = Field(default=6, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)

    mongodb_uri: str = "mongodb://127.0.0.1:27017/"
    mongodb_database: str = "jobplane"
    # Finished jobs (succeeded or dead) are deleted this many days after they finished, by a
    # TTL index on `finished_at`; 0 keeps every job forever. Unfinished jobs never expire.
    job_retention_days: int = Field(default=0, ge=0)

    log_level: str = "INFO"
    # An error logged again and again (an outage) is written once per cause per interval,
    # with the count of the repeats left out; see jobplane.logs.
    log_repeat_interval_seconds: float = Field(default=10.0, ge=0)

    # How long Kafka may take to acknowledge an event before the publish fails.
    kafka_delivery_timeout_seconds: float = Field(default=30.0, gt=0)
    # How long the producer waits to fill a batch (librdkafka's linger.ms). 0: measured twice
    # the acks/s of 2 ms with 32 publishers each awaiting its ack (jobplane.kafka_floor).
    kafka_linger_ms: float = Field(default=0.0, ge=0)
    # Event handling (jobplane.kafka.EventLoop): a transient failure (store, Kafka or SMTP
    # away, a timeout) is retried for ever, the wait doubling up to this bound.
    handler_max_backoff_seconds: float = Field(default=30.0, gt=0)
    # Any other error (a bug, data a library refuses) is tried this often in all, then the
    # event goes to job.dead with the reason.
    handler_max_attempts: int = Field(default=3, ge=1)
    # Events of one partition waiting to be tried again, at most; beyond it the partition is
    # paused (no more of its events are fetched) until some of them are done.
    handler_max_waiting_per_partition: int = Field(default=100, ge=1)
    # How long a stopping service (or a partition moving to another instance) lets the events
    # in hand finish; what still runs then is cancelled, uncommitted, and handled again later.
    drain_timeout_seconds: float = Field(default=10.0, ge=0)
