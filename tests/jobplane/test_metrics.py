"""Metrics: the lag read from librdkafka's statistics, and the /metrics server."""

from __future__ import annotations

import json
import urllib.request

from jobplane import metrics
from prometheus_client.parser import text_string_to_metric_families

from tests.support import free_port


def statistics(**partitions: dict[str, object]) -> str:
    return json.dumps({"topics": {"job.requested": {"partitions": partitions}}})


def lag_samples(group: str) -> dict[tuple[str, str], float]:
    return {
        (s.labels["topic"], s.labels["partition"]): s.value
        for family in text_string_to_metric_families(metrics.exposition().decode())
        if family.name == "jobplane_kafka_consumer_lag"
        for s in family.samples
        if s.labels["group"] == group
    }


def test_lag_of_the_assigned_partitions_only() -> None:
    lags = metrics.partition_lags(
        json.loads(
            statistics(
                **{
                    "0": {"fetch_state": "active", "consumer_lag": 7},
                    "1": {"fetch_state": "none", "consumer_lag": 3},  # not assigned here
                    "2": {"fetch_state": "active", "consumer_lag": -1},  # not known yet
                    "-1": {"fetch_state": "none", "consumer_lag": -1},  # librdkafka's own
                    # committed in a transaction (statistics do not see it): the position's
                    "3": {"fetch_state": "active", "consumer_lag": -1, "ls_offset": 9,
                          "app_offset": 4},
                }
            )
        )
    )  # fmt: skip
    assert lags == {("job.requested", "0"): 7, ("job.requested", "3"): 5}


def test_a_partition_moved_away_loses_its_series() -> None:
    record = metrics.LagRecorder("test-group-moves")
    record(statistics(**{"0": {"fetch_state": "active", "consumer_lag": 2}}))
    record(statistics(**{"1": {"fetch_state": "active", "consumer_lag": 0}}))
    assert lag_samples("test-group-moves") == {("job.requested", "1"): 0}
    record("not json")  # logged, changes nothing
    assert lag_samples("test-group-moves") == {("job.requested", "1"): 0}


def test_reports_sooner_than_the_lag_interval_are_skipped() -> None:
    """The consumer reports every 2 s for its broker watch; the lag keeps its own pace."""
    record = metrics.LagRecorder("test-group-paced", interval_s=60)
    record(statistics(**{"0": {"fetch_state": "active", "consumer_lag": 2}}))
    record(statistics(**{"0": {"fetch_state": "active", "consumer_lag": 9}}))
    assert lag_samples("test-group-paced") == {("job.requested", "0"): 2}


def test_statistics_only_while_metrics_are_served() -> None:
    assert metrics.consumer_statistics("g", 10) == {}
    with metrics.exported(0, in_process=True):
        config = metrics.consumer_statistics("g", 2.5)
        assert config["statistics.interval.ms"] == 2500
    assert metrics.consumer_statistics("g", 10) == {}


def test_metrics_served_over_http_on_the_port() -> None:
    port = free_port()
    metrics.JOBS_SUBMITTED.labels("app-served", "resize").inc()
    with metrics.exported(port, "127.0.0.1"):
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            text = answer.read().decode()
    assert 'jobplane_jobs_submitted_total{app_id="app-served",job_type="resize"} 1.0' in text
    assert "# TYPE jobplane_dispatch_latency_seconds histogram" in text
