"""Metrics and traces of a real run: the four services as processes (their console scripts,
settings in the environment, as deployed), the real local Kafka, store and SMTP sink, a real
HTTP backend. Two jobs run: one fails once and then succeeds, one fails for good.

Metrics are scraped over HTTP from each process (the gateway's API port, the others'
``METRICS_PORT``), before and after. Traces are exported as in production
(``OTEL_TRACES_EXPORTER=otlp``, OTLP/HTTP) to a receiver in the test process
(``tests.e2e.otlp``): the processes cannot share an in-memory exporter, and this way the
exporter configuration users rely on is the one tested.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from jobplane_local import LocalConfig
from jobplane_local.mailbox import read_mailbox
from jobplane_local.platform import PlatformProcess
from jobplane_local.testing import Infra
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.backend import TestBackend, serve_in_background
from tests.e2e.otlp import ReceivedSpan, Receiver, otlp_receiver
from tests.support import eventually, free_port

ADMIN_KEY = "telemetry-admin-key"
PLATFORM_ADMIN = "ops@telemetry.example"
SERVICES = ("gateway", "dispatcher", "retry", "notifier")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class Run:
    """The deployment and what the two jobs left."""

    gateway_url: str
    metrics_urls: dict[str, str]
    receiver: Receiver
    backend: TestBackend
    app_id: str
    before: dict[str, Samples]
    succeeded: dict[str, Any]  # the status of the job that failed once, then succeeded
    dead: dict[str, Any]


def scrape(url: str) -> Samples:
    text = httpx.get(url, timeout=10).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels`` (0 if none)."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


def environment(service: str, infra: Infra, prefix: str, gateway_port: int) -> dict[str, str]:
    common = {
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
        "TOPIC_PREFIX": prefix,
        "TOPIC_PARTITIONS": "2",
        "MONGODB_URI": infra.mongodb_uri,
        "MONGODB_DATABASE": prefix.rstrip(".").replace(".", "_"),
        "LOG_LEVEL": "INFO",
        "CONSUMER_LAG_INTERVAL_SECONDS": "0.5",
    }
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    own = {
        "gateway": {
            "ADMIN_API_KEY": ADMIN_KEY,
            "HOST": "127.0.0.1",
            "PORT": str(gateway_port),
            "PUBLIC_URL": gateway_url,
            "RELAY_INTERVAL_SECONDS": "0.5",
        },
        "dispatcher": {"GROUP_ID": f"{prefix}dispatcher", "GATEWAY_PUBLIC_URL": gateway_url},
        "retry": {
            "ROUTER_GROUP_ID": f"{prefix}retry-router",
            "TIERS_GROUP_ID": f"{prefix}retry-tiers",
            "RETRY_DELAYS_SECONDS": json.dumps([0.3, 0.4, 0.5, 0.6, 0.7]),
        },
        "notifier": {
            "GROUP_ID": f"{prefix}notifier",
            "SMTP_HOST": infra.smtp_host,
            "SMTP_PORT": str(infra.smtp_port),
            "ADMIN_EMAILS": json.dumps([PLATFORM_ADMIN]),
        },
    }[service]
    return {**common, **own}


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
async def run(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Run]:
    prefix = f"tel{uuid.uuid4().hex[:8]}."
    gateway_port = free_port()
    metrics_ports = {name: free_port() for name in SERVICES if name != "gateway"}
    backend = TestBackend()
    backend_port = free_port()
    backend.url = f"http://127.0.0.1:{backend_port}/jobs"
    backend_server, backend_task = await serve_in_background(backend.app(), backend_port)
    config = LocalConfig(local_dir=tmp_path_factory.mktemp("telemetry"))
    with otlp_receiver() as receiver:
        processes = {}
        for name in SERVICES:
            env = environment(name, infra, prefix, gateway_port)
            if name in metrics_ports:
                env["METRICS_PORT"] = str(metrics_ports[name])
                env["METRICS_HOST"] = "127.0.0.1"
            env.update(
                OTEL_TRACES_EXPORTER="otlp",
                OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
                OTEL_BSP_SCHEDULE_DELAY="100",  # export within 0.1 s: the test waits less
            )
            port = gateway_port if name == "gateway" else None
            processes[name] = PlatformProcess(config, name, env, port)
        try:
            with ThreadPoolExecutor(max_workers=len(SERVICES)) as pool:
                for started in [pool.submit(p.start, quiet) for p in processes.values()]:
                    started.result()
            gateway_url = f"http://127.0.0.1:{gateway_port}"
            metrics_urls = {"gateway": f"{gateway_url}/metrics"} | {
                name: f"http://127.0.0.1:{port}/metrics" for name, port in metrics_ports.items()
            }
            before = {name: scrape(url) for name, url in metrics_urls.items()}
            async with httpx.AsyncClient(base_url=gateway_url, timeout=10) as http:
                app_id, succeeded, dead = await run_two_jobs(http, backend, infra.mail_dir)
            yield Run(gateway_url, metrics_urls, receiver, backend, app_id, before, succeeded, dead)
        finally:
            for process in processes.values():
                process.stop(quiet)
            backend_server.should_exit = True
            await backend_task
            for process in processes.values():
                log = process.log_file.read_text() if process.log_file.exists() else ""
                if '"level":"error"' in log or "Traceback" in log:
                    print(f"--- {process.name} log ---\n{log[-4000:]}", file=sys.stderr)


async def run_two_jobs(
    http: httpx.AsyncClient, backend: TestBackend, mail_dir: Path
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    app_id = f"app-{uuid.uuid4().hex[:10]}"
    created = await http.post(
        "/v1/apps",
        json={
            "app_id": app_id,
            "backend_url": backend.url,
            "default_timeout_seconds": 60,
            "admin_emails": [f"admin-{app_id}@example.com"],
        },
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert created.status_code == 201, created.text
    headers = {"Authorization": f"Bearer {created.json()['api_key']}"}
    email = f"user@{app_id}.example.com"
    registered = await http.put("/v1/users/u1", json={"email": email}, headers=headers)
    assert registered.status_code in (200, 201), registered.text

    trace_ids: dict[str, str] = {}

    async def submit(payload: dict[str, Any]) -> str:
        answer = await http.post(
            "/v1/jobs",
            json={"user_id": "u1", "job_type": "thumbnail", "payload": payload},
            headers=headers,
        )
        assert answer.status_code == 202, answer.text
        job_id: str = answer.json()["job_id"]
        trace_ids[job_id] = answer.headers["X-Trace-Id"]  # the job's, as its logs carry
        return job_id

    async def finished(job_id: str, status: str) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        async def check() -> bool:
            nonlocal seen
            seen = (await http.get(f"/v1/jobs/{job_id}", headers=headers)).json()
            return seen.get("status") == status

        await eventually(check, 60, lambda: f"job {job_id} never {status}: {seen}")
        return seen

    succeeding = await submit({"fail_times": 1})
    dying = await submit({"behaviour": "permanent"})
    succeeded = await finished(succeeding, "succeeded") | {"trace_id": trace_ids[succeeding]}
    dead = await finished(dying, "dead") | {"trace_id": trace_ids[dying]}

    async def mailed() -> bool:  # both users' mails and the alert: the notifier is done
        mails = [m for m in read_mailbox(mail_dir) if email in m.rcpt_tos]
        alerts = [m for m in read_mailbox(mail_dir) if PLATFORM_ADMIN in m.rcpt_tos]
        return len(mails) >= 2 and any(m.message["X-Jobplane-Job-Id"] == dying for m in alerts)

    await eventually(mailed, 30, lambda: "the outcome e-mails did not all arrive")
    return app_id, succeeded, dead


async def test_counters_move_during_a_run(run: Run) -> None:
    after: dict[str, Samples] = {}

    async def lag_reported() -> bool:  # the lag comes with librdkafka's next statistics
        after.update({name: scrape(url) for name, url in run.metrics_urls.items()})
        return any(n == "jobplane_kafka_consumer_lag" for n, _ in after["notifier"])

    await eventually(lag_reported, 15, lambda: "no consumer lag reported")
    for service, samples in after.items():  # the run's excerpt (shown with -s)
        print(f"\n# {service} ({run.metrics_urls[service]})")
        for (name, have), v in sorted(samples.items(), key=lambda s: (s[0][0], sorted(s[0][1]))):
            if name.startswith("jobplane_") and not name.endswith(("_bucket", "_created")):
                shown = ",".join(f'{k}="{v}"' for k, v in sorted(have))
                print(f"{name}{{{shown}}} {v:g}")
    app = {"app_id": run.app_id, "job_type": "thumbnail"}
    moved: list[tuple[str, str, dict[str, str], float]] = [
        ("gateway", "jobplane_jobs_submitted_total", app, 2),
        ("gateway", "jobplane_jobs_completed_total", app, 1),  # by callback
        ("gateway", "jobplane_backend_failures_total", {"kind": "reported"}, 2),
        ("gateway", "jobplane_job_duration_seconds_count", {"outcome": "succeeded"}, 1),
        ("dispatcher", "jobplane_dispatch_latency_seconds_count", {}, 3),
        ("dispatcher", "jobplane_backend_request_seconds_count", {"outcome": "accepted"}, 3),
        ("retry", "jobplane_retries_scheduled_total", {"tier": "1"}, 1),
        ("retry", "jobplane_jobs_dead_total", {**app, "failure_kind": "reported"}, 1),
        ("retry", "jobplane_job_duration_seconds_count", {"outcome": "dead"}, 1),
        ("notifier", "jobplane_emails_sent_total", {"kind": "user_success"}, 1),
        ("notifier", "jobplane_emails_sent_total", {"kind": "user_failure"}, 1),
        ("notifier", "jobplane_emails_sent_total", {"kind": "admin_alert"}, 2),
    ]
    for service, name, labels, expected in moved:
        was = value(run.before[service], name, **labels)
        now = value(after[service], name, **labels)
        assert (was, now) == (0, expected), f"{service} {name}{labels}: {was} → {now}"
    # Every consumer group reports its lag per partition: all consumed, so 0, or 1 where the
    # last write was a transaction's (its commit marker takes an offset of its own).
    groups = {dict(labels)["group"] for name, labels in after["retry"] if "consumer_lag" in name}
    assert {g.rsplit(".", 1)[1] for g in groups} == {"retry-router", "retry-tiers"}
    # librdkafka reports committed offsets every statistics interval, so a snapshot may predate
    # the last commit: the lag must come down to that, not be there at the first scrape.
    lags: list[float] = []

    async def lag_settled() -> bool:
        lags[:] = [
            v
            for (n, _), v in scrape(run.metrics_urls["dispatcher"]).items()
            if n == "jobplane_kafka_consumer_lag"
        ]
        return bool(lags) and all(lag in (0, 1) for lag in lags)

    await eventually(lag_settled, 15, lambda: f"dispatcher lag did not settle: {lags}")
    assert ("jobplane_outbox_due_jobs", frozenset()) in after["gateway"]


def tree(spans: list[ReceivedSpan]) -> str:
    """The trace as an indented tree (for the failure message and the run's output)."""
    children: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        children.setdefault(span.parent_span_id, []).append(span)
    lines: list[str] = []

    def walk(parent: str, depth: int) -> None:
        for span in children.get(parent, []):
            attempt = span.attributes.get("jobplane.attempt", "")
            lines.append(
                f"{'  ' * depth}{span.service}: {span.name} [{span.kind}]"
                + (f" attempt={attempt}" if attempt else "")
            )
            walk(span.span_id, depth + 1)

    known = {s.span_id for s in spans}
    for orphan_parent in sorted({s.parent_span_id for s in spans} - known):
        walk(orphan_parent, 0)
    return "\n".join(lines)


async def test_one_job_is_one_trace_across_the_services(run: Run) -> None:
    trace_id = run.succeeded["trace_id"]
    spans: list[ReceivedSpan] = []

    def have(service: str, kind: str, name: Callable[[str], bool]) -> bool:
        return any(s.service == service and s.kind == kind and name(s.name) for s in spans)

    async def complete() -> bool:  # the last span is the success mail's
        nonlocal spans
        spans = run.receiver.of_trace(trace_id)
        return have("jobplane-notifier", "client", lambda n: n == "smtp send")

    await eventually(complete, 20, lambda: f"trace {trace_id} incomplete:\n{tree(spans)}")
    print(f"\ntrace {trace_id} of job {run.succeeded['job_id']}:\n{tree(spans)}")

    # One root (the submission), every other span's parent in the trace: one connected trace.
    by_id = {s.span_id: s for s in spans}
    roots = [s for s in spans if not s.parent_span_id]
    assert [(r.service, r.name) for r in roots] == [("jobplane-gateway", "POST /v1/jobs")], tree(
        spans
    )
    assert all(s.parent_span_id in by_id for s in spans if s.parent_span_id), tree(spans)
    assert {s.service for s in spans} == {f"jobplane-{name}" for name in SERVICES}

    def parent(span: ReceivedSpan) -> ReceivedSpan:
        return by_id[span.parent_span_id]

    # gateway → Kafka → dispatcher → backend → callback → Kafka → notifier, each attempt.
    for attempt in (1, 2):
        consume = next(
            s
            for s in spans
            if s.name.endswith("job.requested")
            and s.kind == "consumer"
            and s.attributes["jobplane.attempt"] == attempt
        )
        assert consume.service == "jobplane-dispatcher"
        assert parent(consume).kind == "producer"
        call = next(s for s in spans if s.name == "POST backend" and parent(s) is consume)
        callback = next(s for s in spans if s.parent_span_id == call.span_id)
        assert (callback.service, callback.name, callback.kind) == (
            "jobplane-gateway",
            "POST /v1/jobs/{job_id}/result",
            "server",
        )
    first_producer = parent(
        next(s for s in spans if s.kind == "consumer" and s.attributes.get("jobplane.attempt") == 1)
    )
    assert parent(first_producer).name == "POST /v1/jobs"
    mail = next(s for s in spans if s.name == "smtp send")
    notified = parent(mail)
    assert notified.name.endswith("job.completed") and notified.service == "jobplane-notifier"
    assert parent(parent(notified)).name == "POST /v1/jobs/{job_id}/result"
    # The retry went through the retry service: router, tier, release.
    assert have("jobplane-retry", "consumer", lambda n: n.endswith("job.failed"))
    assert have("jobplane-retry", "consumer", lambda n: n.startswith("release "))
    # Every span carries the job's trace id as the logs do, and nothing else joined the trace.
    assert {s.attributes.get("jobplane.trace_id") for s in spans} == {trace_id}
