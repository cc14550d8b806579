"""The Grafana dashboard and the Prometheus alert rules (deploy/observability) ask only for
metrics Jobplane exposes, and the Kubernetes pods are annotated for scraping on the port
that serves them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from jobplane import metrics
from prometheus_client.metrics import MetricWrapperBase

from tests.deploy.kustomize import render
from tests.deploy.test_k8s import BASE, by_kind, container, environment, service_of

OBSERVABILITY = Path(__file__).resolve().parents[2] / "deploy" / "observability"
_METRIC_NAME = re.compile(r"\bjobplane_[a-z_]+")
_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "gauge": ("",),
}


def exposed_names() -> set[str]:
    """Every series name jobplane.metrics defines, as Prometheus sees it."""
    names: set[str] = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            for family in value.describe():
                names |= {family.name + suffix for suffix in _SUFFIXES[family.type]}
    return names


def asked_names(expression: str) -> set[str]:
    return set(_METRIC_NAME.findall(expression))


def dashboard_expressions() -> list[str]:
    dashboard: dict[str, Any] = json.loads((OBSERVABILITY / "grafana-dashboard.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def alert_rules() -> list[dict[str, Any]]:
    rules: dict[str, Any] = yaml.safe_load((OBSERVABILITY / "alerts.yml").read_text())
    return [rule for group in rules["groups"] for rule in group["rules"]]


def test_the_dashboard_shows_every_metric_and_only_those_that_exist() -> None:
    asked = set().union(*(asked_names(e) for e in dashboard_expressions()))
    assert asked - exposed_names() == set(), "the dashboard asks for metrics nobody exposes"
    families = {name.removesuffix(s) for name in asked for s in ("_total", "_bucket")}
    defined = {
        family.name
        for value in vars(metrics).values()
        if isinstance(value, MetricWrapperBase)
        for family in value.describe()
    }
    assert defined <= families, f"metrics the dashboard does not show: {defined - families}"


def test_the_alerts_cover_dead_jobs_lag_and_smtp_with_metrics_that_exist() -> None:
    rules = alert_rules()
    exposed = exposed_names()
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert {"summary", "description"} <= set(rule["annotations"])
        assert asked_names(rule["expr"]) and asked_names(rule["expr"]) <= exposed, rule["alert"]
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
    watched = {name for rule in rules for name in asked_names(rule["expr"])}
    assert {
        "jobplane_jobs_dead_total",
        "jobplane_kafka_consumer_lag",
        "jobplane_emails_failed_total",
    } <= watched


def test_the_checks_can_fail() -> None:
    assert asked_names("rate(jobplane_jobs_died_total[5m])") - exposed_names() != set()


@pytest.mark.parametrize("name", ["gateway", "dispatcher", "retry", "notifier"])
def test_every_pod_is_scraped_on_the_port_that_serves_its_metrics(name: str) -> None:
    documents = render(BASE)
    deployment = by_kind(documents, "Deployment")[f"jobplane-{name}"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    port = int(annotations["prometheus.io/port"])
    assert port in {p["containerPort"] for p in container(deployment)["ports"]}
    env = environment(documents, deployment)
    if service_of(deployment) == "gateway":
        assert int(env["PORT"]) == port  # served by the API itself
    else:
        assert int(env["METRICS_PORT"]) == port
