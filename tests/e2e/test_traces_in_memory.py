"""One job's spans from all four services join in one trace, seen by the OpenTelemetry SDK's
in-memory exporter: the services run in this process (the e2e platform), so they share the
exporter. (``test_telemetry`` checks the same across processes, over OTLP.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from jobplane import tracing
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.e2e.conftest import Platform
from tests.support import eventually


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    """Tracing on before the platform starts: its services find it on and keep it."""
    exporter = InMemorySpanExporter()
    tracing.configure("e2e", [tracing.simple_processor(exporter)])
    yield exporter
    tracing.shutdown()


@pytest.fixture(scope="module")
def traced_platform(exporter: InMemorySpanExporter, platform: Platform) -> Platform:
    return platform


async def test_one_jobs_spans_join_in_one_trace(
    exporter: InMemorySpanExporter, traced_platform: Platform
) -> None:
    platform = traced_platform
    app = await platform.register_app()
    user_id, _ = await platform.register_user(app)
    response = await platform.http.post(
        "/v1/jobs",
        json={"user_id": user_id, "job_type": "thumbnail", "payload": {"fail_times": 1}},
        headers=app.headers,
    )
    assert response.status_code == 202, response.text
    trace_id = response.headers["X-Trace-Id"]
    await platform.wait_until(app, response.json()["job_id"], lambda s: s["status"] == "succeeded")
    spans: list[ReadableSpan] = []

    def parents_missing() -> list[str]:
        ids = {s.context.span_id for s in spans if s.context is not None}
        return [s.name for s in spans if s.parent is not None and s.parent.span_id not in ids]

    async def mailed() -> bool:
        nonlocal spans
        spans = [
            s
            for s in exporter.get_finished_spans()
            if s.context is not None and f"{s.context.trace_id:032x}" == trace_id
        ]
        # A span is exported when it ends: the mail's span ends before the span of the event
        # handling around it (which goes on to record the mail as sent).
        return any(s.name == "smtp send" for s in spans) and not parents_missing()

    await eventually(
        mailed,
        30,
        lambda: f"spans {[s.name for s in spans]}, parent missing of {parents_missing()}",
    )
    roots = [s for s in spans if s.parent is None]
    assert [s.name for s in roots] == ["POST /v1/jobs"]
    topics = platform.topics
    names = {s.name for s in spans}
    assert {
        "POST /v1/jobs",  # gateway
        f"process {topics.requested}",  # dispatcher
        "POST backend",
        "POST /v1/jobs/{job_id}/result",  # gateway: the callbacks
        f"process {topics.failed}",  # retry: router
        f"release {topics.retry(1)}",  # retry: tier 1
        f"process {topics.completed}",  # notifier
        "smtp send",
    } <= names
    attempts = {s.attributes.get("jobplane.attempt") for s in spans if s.attributes}
    assert {1, 2} <= attempts
