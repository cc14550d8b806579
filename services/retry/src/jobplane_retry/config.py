"""Settings of the retry service, read from environment variables."""

from __future__ import annotations

from jobplane.config import CommonSettings, EnvList
from jobplane.topics import RETRY_TIERS
from pydantic import Field, field_validator


class Settings(CommonSettings):
    router_group_id: str = "jobplane-retry-router"
    tiers_group_id: str = "jobplane-retry-tiers"

    # Retries after the first attempt: attempt max_retries + 1 is the last one. One Kafka
    # topic exists per retry tier, so there can be at most RETRY_TIERS retries.
    max_retries: int = Field(default=5, ge=0, le=RETRY_TIERS)
    # Delay before the N-th retry is retry_delays_seconds[N-1]; env: a JSON list or
    # comma-separated (``RETRY_DELAYS_SECONDS=1,2``).
    # A table shorter than max_retries is extended by doubling its last entry.
    retry_delays_seconds: EnvList[float] = Field(default=[30.0, 120.0, 600.0, 1800.0, 3600.0])
    # Upper bound of a retry's base delay (before jitter).
    max_backoff_seconds: float = Field(default=6 * 3600.0, gt=0)
    # Random extra delay, as a fraction of the base delay: 0.1 = up to +10%, never less.
    jitter: float = Field(default=0.1, ge=0, le=10)

    # A retry is requested this long before it is due, with its due time as the request's
    # ``not_before``: the dispatcher calls the backend at that instant. The Kafka transaction
    # that requests it (a few ms idle, hundreds on a busy machine) then happens before the
    # due time instead of making the retry late. 0: requested at its due time.
    # At most the dispatcher's MAX_NOT_BEFORE_AHEAD_SECONDS (60).
    release_lead_seconds: float = Field(default=1.0, ge=0, le=30)

    # How long a release's Kafka transaction may stay open before the broker aborts it
    # (librdkafka's transaction.timeout.ms; Kafka's default is a minute). A transaction left
    # open holds back every read_committed consumer of the partitions it wrote to: a retry
    # service killed in the middle of one would keep the dispatchers from the new jobs of
    # those ``job.requested`` partitions until then (the next process has another
    # transactional id, so it cannot abort it). A release commits in milliseconds, in
    # hundreds on a busy machine; one aborted is made again.
    tiers_transaction_timeout_seconds: float = Field(default=10.0, ge=1, le=900)

    # Events a tier partition holds in memory until due, at most; beyond it the partition
    # is paused until half of them are out.
    tier_max_held_per_partition: int = Field(default=2000, ge=1)
    # Failures of different jobs routed at once (one job's failures are routed in order).
    router_concurrency: int = Field(default=32, ge=1)
    # How long after it is owed an event may stay unpublished before the gateway's relay
    # publishes it (the announce_due_at outbox, written with each decision).
    announce_grace_seconds: float = Field(default=30.0, gt=0)

    @field_validator("retry_delays_seconds")
    @classmethod
    def _delays_positive(cls, value: list[float]) -> list[float]:
        if not value:
            raise ValueError("retry_delays_seconds needs at least one delay")
        if any(delay < 0 for delay in value):
            raise ValueError("retry delays must not be negative")
        return value
