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
