"""Traces: the job's trace id, parents across Kafka, the no-op when off (OpenTelemetry SDK's
in-memory exporter; one test over the real local Kafka)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from jobplane import tracing
from jobplane.config import CommonSettings
from jobplane.events import Event, JobRequested
from jobplane.kafka import Publisher, Record
from jobplane.logs import new_trace_id
from jobplane.tracing import SpanKind
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.jobplane.test_kafka import running_loop
from tests.support import eventually


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert tracing.configure("test", [tracing.simple_processor(exporter)])
    try:
        yield exporter
    finally:
        tracing.shutdown()


def hex_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.trace_id:032x}"


def test_off_by_default_no_spans_no_headers() -> None:
    assert not tracing.is_enabled()
    with tracing.span("x", new_trace_id()) as span:
        assert span is None
    assert tracing.kafka_headers("t", new_trace_id(), "j", 1) == []
    assert tracing.http_headers() == {}
    # The same shared no-op object every time: nothing is built per event.
    assert tracing.span("a", "b") is tracing.consume_span("t", (), "b", "j", 1)


def test_exporters_come_from_the_standard_variables() -> None:
    assert tracing.exporters_from_env({}) == []
    assert tracing.exporters_from_env({"OTEL_TRACES_EXPORTER": "none"}) == []
    (otlp,) = tracing.exporters_from_env({"OTEL_TRACES_EXPORTER": "otlp"})
    assert type(otlp).__module__.startswith("opentelemetry.exporter.otlp.proto.http")
    off = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}
    assert tracing.exporters_from_env(off) == []
    with pytest.raises(ValueError, match="http/protobuf"):
        tracing.exporters_from_env(
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
        )
    with pytest.raises(ValueError, match="zipkin"):
        tracing.exporters_from_env({"OTEL_TRACES_EXPORTER": "zipkin"})


def test_the_otel_trace_id_is_the_jobs_trace_id() -> None:
    trace_id = new_trace_id()
    assert f"{tracing.otel_trace_id(trace_id):032x}" == trace_id
    # An id a caller chose in another form: derived, always the same.
    assert tracing.otel_trace_id("order-42") == tracing.otel_trace_id("order-42") != 0
    assert tracing.traceparent_trace_id(f"00-{trace_id}-00f067aa0ba902b7-01") == trace_id
    assert tracing.traceparent_trace_id(f"00-{'0' * 32}-00f067aa0ba902b7-01") is None
    assert tracing.traceparent_trace_id("garbage") is None


def test_a_root_span_takes_the_jobs_trace_id(exported: InMemorySpanExporter) -> None:
    trace_id = new_trace_id()
    with tracing.span("submit", trace_id, kind=SpanKind.SERVER):
        with tracing.span("inner", trace_id):
            pass
        with tracing.span("another job's", new_trace_id()):
            pass  # not a child of a span of another trace: a root of its own
    inner, other, submit = exported.get_finished_spans()
    assert hex_id(submit) == hex_id(inner) == trace_id
    assert submit.parent is None and inner.parent is not None
    assert inner.parent.span_id == submit.context.span_id
    assert other.parent is None and hex_id(other) != trace_id


def test_a_foreign_traceparent_is_a_link_not_the_parent(exported: InMemorySpanExporter) -> None:
    trace_id, foreign = new_trace_id(), new_trace_id()
    with tracing.span("callback", trace_id, traceparent=f"00-{foreign}-00f067aa0ba902b7-01"):
        pass
    (span,) = exported.get_finished_spans()
    assert hex_id(span) == trace_id and span.parent is None
    assert [f"{link.context.trace_id:032x}" for link in span.links] == [foreign]


def test_kafka_headers_make_the_consumer_a_child_of_the_producer(
    exported: InMemorySpanExporter,
) -> None:
    trace_id = new_trace_id()
    headers = tracing.kafka_headers("job.requested", trace_id, "j1", 1)
    assert [name for name, _ in headers] == ["traceparent"]
    with tracing.consume_span("job.requested", headers, trace_id, "j1", 1):
        pass
    producer, consumer = exported.get_finished_spans()
    assert (producer.kind, consumer.kind) == (SpanKind.PRODUCER, SpanKind.CONSUMER)
    assert consumer.parent is not None
    assert consumer.parent.span_id == producer.context.span_id
    assert consumer.attributes is not None and consumer.attributes["jobplane.job_id"] == "j1"


async def test_spans_join_across_real_kafka(
    settings: CommonSettings, publisher: Publisher, exported: InMemorySpanExporter
) -> None:
    """Publisher → Kafka → EventLoop: the handler runs inside the consumer span, child of
    the producer's, and what it publishes is a child again."""
    trace_id = new_trace_id()
    handled = asyncio.Event()

    async def handler(event: Event, record: Record) -> None:
        assert dict(record.headers)["traceparent"]
        await publisher.publish(publisher.topics.failed, event)
        handled.set()

    job_id = uuid.uuid4().hex
    async with running_loop(settings, publisher, handler):
        await publisher.publish(
            publisher.topics.requested,
            JobRequested(
                job_id=job_id, app_id="a", user_id="u", attempt=1, trace_id=trace_id,
                job_type="x", payload="{}",
            ),
        )  # fmt: skip
        await asyncio.wait_for(handled.wait(), 30)

        async def three() -> bool:
            return len(exported.get_finished_spans()) >= 3

        await eventually(three, 10, lambda: f"{exported.get_finished_spans()}")
    spans = {span.name: span for span in exported.get_finished_spans()}
    topics = publisher.topics
    produced = spans[f"publish {topics.requested}"]
    consumed = spans[f"process {topics.requested}"]
    forwarded = spans[f"publish {topics.failed}"]
    assert {hex_id(s) for s in (produced, consumed, forwarded)} == {trace_id}
    assert consumed.parent.span_id == produced.context.span_id  # type: ignore[union-attr]
    assert forwarded.parent.span_id == consumed.context.span_id  # type: ignore[union-attr]
