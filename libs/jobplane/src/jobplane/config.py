"""Settings every Jobplane service shares, read from environment variables.

Each service extends :class:`CommonSettings` with its own fields, so one typed object per
service holds all of its configuration.
"""

from __future__ import annotations

import json
from typing import Annotated, TypeVar

from pydantic import BeforeValidator, Field
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

T = TypeVar("T")

KIB = 1024
# Kafka's default largest message is 1 MB (``message.max.bytes`` = 1,048,588). An event
# carries the payload (job.requested, job.failed) or the result (job.completed) plus an
# envelope of a few KiB (ids, job type, a failure message of at most 10 KiB), so neither
# limit may come near 1 MB.
MAX_SIZE_LIMIT_BYTES = 900 * KIB


def list_from_env(value: object) -> object:
    """A list setting as written in an environment variable: JSON (``[1, 2]``) or, as people
    type it on a command line, comma-separated (``1,2``)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        return json.loads(text)
    return [part.strip() for part in text.split(",") if part.strip()]


# A list setting that takes ``RETRY_DELAYS_SECONDS=1,2`` as well as ``=[1, 2]``.
EnvList = Annotated[list[T], NoDecode, BeforeValidator(list_from_env)]


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
    # Finished jobs (succeeded, dead or cancelled) are deleted this many days after they
    # finished, by a TTL index on `finished_at`; 0 keeps every job forever. Unfinished jobs
    # never expire.
    job_retention_days: int = Field(default=0, ge=0)

    # The largest result a backend may hand over, in bytes of its JSON text (UTF-8), by
    # callback (413) or in its answer to the dispatch (the attempt fails, not retryable):
    # a stored result must fit its job.completed event.
    max_result_bytes: int = Field(default=512 * KIB, ge=1 * KIB, le=MAX_SIZE_LIMIT_BYTES)

    log_level: str = "INFO"
    # Prometheus metrics (`/metrics`) on a small HTTP server of the service's own, on this
    # port; 0: none. The gateway serves them on its API port as well.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    # The address that metrics server listens on (`0.0.0.0`: every interface, as Prometheus
    # in a cluster needs).
    metrics_host: str = "0.0.0.0"  # noqa: S104
    # How often a consumer's lag per partition is refreshed (from librdkafka's statistics,
    # handed over on the consumer's own thread; only while metrics are served).
    consumer_lag_interval_seconds: float = Field(default=10.0, gt=0)
    # An error logged again and again (an outage) is written once per cause per interval,
    # with the count of the repeats left out; see jobplane.logs.
    log_repeat_interval_seconds: float = Field(default=10.0, ge=0)

    # How long Kafka may take to acknowledge an event before the publish fails.
    kafka_delivery_timeout_seconds: float = Field(default=30.0, gt=0)
    # How long the producer waits to fill a batch (librdkafka's linger.ms). 5 ms: in the
    # side-by-side benchmark (bench/README.md) fewer, fuller requests took the broker and the
    # services less CPU than 0 (jobs/s +19 %, CPU per job -17 %), and more than 10 and 25.
    kafka_linger_ms: float = Field(default=5.0, ge=0)
    # How long a consumer that stopped heartbeating keeps its partitions (librdkafka's
    # session.timeout.ms, Kafka's default): how long the partitions of a killed instance wait
    # for another, and how long, after Kafka restarts, a consumer that had to be replaced for
    # having lost every broker waits for its partitions (docs/operations.md).
    kafka_session_timeout_seconds: float = Field(default=45.0, ge=6, le=300)
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
