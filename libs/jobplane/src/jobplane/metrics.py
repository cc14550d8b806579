"""Prometheus metrics of every Jobplane service, defined in one place.

Each process exposes its own metrics (prometheus-client's default registry, with the
process and Python collectors): the gateway at ``/metrics`` on its API port, and every
service on a small HTTP server of its own when ``METRICS_PORT`` is set (a thread of
prometheus-client's, see :func:`exported`). Prometheus adds the ``job`` and ``instance``
labels when it scrapes, so no metric carries the service's name.

Counters are incremented where the state change they count is decided: by the winner of
the guarded write (a replayed event matches nothing and counts nothing), so a job is counted
completed or dead once however often its events are delivered. An increment costs about a
microsecond (a lock and a dict lookup); nothing here touches the network on the hot path.

What each metric means, and the alerts built on them: ``docs/operations.md``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)

from jobplane.logs import fields

__all__ = ["CONTENT_TYPE_LATEST", "exposition"]

log = logging.getLogger(__name__)

# No `_created` series beside each counter and histogram: twice the series, and Prometheus
# does not need them to compute rates.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Latencies of a platform whose jobs run for seconds to hours: from 10 ms to 2 h.
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 7200)
# A backend's answer to the dispatch POST (not the job's run time): 5 ms to its 30 s timeout.
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

# -- jobs (gateway, dispatcher, retry) ----------------------------------------------------

JOBS_SUBMITTED = Counter(
    "jobplane_jobs_submitted",
    "Jobs accepted by the gateway (new jobs only: a repeated Idempotency-Key is not counted).",
    ["app_id", "job_type"],
)
JOBS_COMPLETED = Counter(
    "jobplane_jobs_completed",
    "Jobs that succeeded (the backend's result was recorded).",
    ["app_id", "job_type"],
)
JOBS_DEAD = Counter(
    "jobplane_jobs_dead",
    "Jobs given up: retries exhausted, a failure not retryable, or a request rejected.",
    ["app_id", "job_type", "failure_kind"],
)
JOB_DURATION = Histogram(
    "jobplane_job_duration_seconds",
    "End to end: from the job's submission to its outcome being recorded.",
    ["outcome"],
    buckets=_LATENCY_BUCKETS,
)
RETRIES_SCHEDULED = Counter(
    "jobplane_retries_scheduled",
    "Retries scheduled, by tier (the N-th retry of a job goes to tier N).",
    ["tier"],
)

# -- dispatching (dispatcher, gateway callbacks) ------------------------------------------

DISPATCH_LATENCY = Histogram(
    "jobplane_dispatch_latency_seconds",
    "From a job.requested event (submission or due retry) to the backend's answer to the "
    "dispatch POST: time in Kafka, the claim and the call.",
    buckets=_LATENCY_BUCKETS,
)
BACKEND_REQUEST = Histogram(
    "jobplane_backend_request_seconds",
    "The dispatch POST to an app's backend alone, by what it answered.",
    ["outcome"],
    buckets=_REQUEST_BUCKETS,
)
BACKEND_FAILURES = Counter(
    "jobplane_backend_failures",
    "Failed attempts, by kind: unreachable, timeout, http_status, reported (by callback or "
    "answer), rejected (a result over MAX_RESULT_BYTES).",
    ["kind"],
)

# -- e-mail (notifier) ----------------------------------------------------------------------

EMAILS_SENT = Counter(
    "jobplane_emails_sent",
    "E-mails the SMTP server accepted, by kind (user_success, user_failure, admin_alert).",
    ["kind"],
)
EMAILS_FAILED = Counter(
    "jobplane_emails_failed",
    "E-mails not sent, by kind and reason: transient (tried again later) or refused (for good).",
    ["kind", "reason"],
)
EMAILS_DEDUPLICATED = Counter(
    "jobplane_emails_deduplicated",
    "E-mails not sent because they were sent (or settled) already: a duplicate event.",
    ["kind"],
)

WEBHOOK_DELIVERIES = Counter(
    "jobplane_webhook_deliveries",
    "Outcome webhook deliveries to apps, by outcome (succeeded, dead) and result: sent, "
    "retrying (failed, tried again later), failed (given up), deferred (not tried: the "
    "endpoint did not answer a moment ago).",
    ["outcome", "result"],
)

# -- Kafka and the outbox -------------------------------------------------------------------

CONSUMER_LAG = Gauge(
    "jobplane_kafka_consumer_lag",
    "Events of a partition not yet committed by the group (the last stable offset minus the "
    "committed offset), from librdkafka's statistics of this instance's assigned partitions.",
    ["group", "topic", "partition"],
)
OUTBOX_DUE = Gauge(
    "jobplane_outbox_due_jobs",
    "Jobs owing an event past its grace (announce_due_at < now), as the relay last counted.",
)
OUTBOX_RELAYED = Counter(
    "jobplane_outbox_relayed_events",
    "Owed events the outbox relay published again, by the topic's role.",
    ["topic"],
)


# The app and job type of a dead job that was never stored (e.g. produced for an unknown app).
UNKNOWN = "(unknown)"


def observe_outcome(outcome: str, created_at: datetime, now: datetime) -> None:
    """A job's end-to-end latency, once its outcome (``succeeded`` / ``dead``) is recorded."""
    JOB_DURATION.labels(outcome).observe(max((now - created_at).total_seconds(), 0.0))


# -- consumer lag from librdkafka's statistics ------------------------------------------------

# How many services of this process serve their metrics (tests run several in one process):
# only while some do are the consumers' statistics on.
_exporting = 0


def consumer_statistics(group_id: str, interval_s: float) -> dict[str, Any]:
    """Consumer settings that feed ``jobplane_kafka_consumer_lag`` (none when the process
    exports no metrics). librdkafka calls ``stats_cb`` from the consumer's own poll, every
    ``interval_s``: no extra request to the brokers, no work per event."""
    if not _exporting:
        return {}
    return {
        "statistics.interval.ms": max(int(interval_s * 1000), 1),
        "stats_cb": LagRecorder(group_id, interval_s),
    }


class LagRecorder:
    """Sets the lag gauge of one consumer group from librdkafka's statistics; partitions no
    longer assigned to this instance lose their series (another instance reports them).
    Reports closer than ``interval_s`` to the last one used are skipped: the client may
    report more often for reasons of its own (jobplane.kafka_client.BrokerWatch)."""

    def __init__(self, group_id: str, interval_s: float = 0.0) -> None:
        self.group_id = group_id
        self.interval_s = interval_s
        self.reported: set[tuple[str, str]] = set()
        self._last = -math.inf

    def __call__(self, statistics_json: str) -> None:
        now = time.monotonic()
        # A tenth early still counts: the reports come on librdkafka's timer, with jitter.
        if now - self._last < self.interval_s * 0.9:
            return
        self._last = now
        try:
            current = partition_lags(json.loads(statistics_json))
        except (ValueError, TypeError, AttributeError) as exc:
            log.warning("unreadable kafka statistics", extra=fields(error=repr(exc)))
            return
        for (topic, partition), lag in current.items():
            CONSUMER_LAG.labels(self.group_id, topic, partition).set(lag)
        for topic, partition in self.reported - current.keys():
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(self.group_id, topic, partition)
        self.reported = set(current)


def partition_lags(statistics: dict[str, Any]) -> dict[tuple[str, str], int]:
    """``{(topic, partition): lag}`` of the partitions this consumer has assigned and knows
    the lag of: librdkafka's ``consumer_lag`` (end offset minus the committed offset); when
    it does not know the committed offset (-1: the retry tiers commit theirs inside Kafka
    transactions, which its statistics do not follow), the end offset minus the position."""
    lags: dict[tuple[str, str], int] = {}
    for topic, topic_stats in (statistics.get("topics") or {}).items():
        for partition, stats in (topic_stats.get("partitions") or {}).items():
            if partition == "-1" or stats.get("fetch_state") in (None, "none", "stopped"):
                continue  # "-1": librdkafka's internal partition; others: not ours
            lag = stats.get("consumer_lag", -1)
            if not (isinstance(lag, int) and lag >= 0):
                end, position = stats.get("ls_offset", -1), stats.get("app_offset", -1)
                lag = end - position if end >= 0 and position >= 0 else -1
            if lag >= 0:
                lags[(topic, str(partition))] = lag
    return lags


# -- exposing --------------------------------------------------------------------------------


def exposition() -> bytes:
    """The process's metrics in Prometheus's text format (``CONTENT_TYPE_LATEST``)."""
    return generate_latest(REGISTRY)


@contextlib.contextmanager
def exported(port: int, host: str = "0.0.0.0", *, in_process: bool = False) -> Iterator[None]:  # noqa: S104
    """Serve ``/metrics`` on ``host:port`` for the block (a daemon thread of prometheus-
    client's; port 0: no server). ``in_process``: the process serves them itself (the
    gateway, on its API port), so the Kafka statistics are wanted even without a port."""
    global _exporting
    exporting = bool(port) or in_process
    stop: Callable[[], None] | None = None
    if port:
        server, thread = start_http_server(port, host)
        log.info("serving metrics", extra=fields(host=host, port=port, path="/metrics"))

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

    _exporting += exporting
    try:
        yield
    finally:
        _exporting -= exporting
        if stop is not None:
            stop()
