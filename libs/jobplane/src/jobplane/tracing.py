"""OpenTelemetry traces of a job across the services, in the job's own trace id.

A job's spans run gateway → Kafka → dispatcher → backend → callback → notifier (and through
the retry service for each retry). The context travels as W3C ``traceparent``: in a Kafka
header beside the ``trace_id`` header, and in HTTP headers (the dispatcher's POST to the
backend; a backend that sends it back with its callback keeps the callback in the trace).

**The trace id is the job's trace id**, the one every log line, event and ``X-Trace-Id``
header carries: a span whose parent is unknown (a root: the submit request, the relay
re-publishing, a consumer whose event came without ``traceparent``) is started with that id
(:func:`otel_trace_id`: the same 32 hex digits, or 128 bits of its SHA-256 when a caller
chose an id of another form); a ``traceparent`` of another trace becomes a link, never the
parent. So a job is one trace from its submission to its outcome, each attempt a branch of
it (every span carries ``jobplane.attempt``): search the logs or the tracing backend with
the same id.

**Off by default, and then next to free**: ``OTEL_TRACES_EXPORTER`` unset or ``none`` leaves
no tracer at all; every helper here returns a shared no-op context manager (no span object,
no context change, no header) after one ``is None`` check. On: ``OTEL_TRACES_EXPORTER=otlp``
(OTLP over HTTP/protobuf, the standard ``OTEL_EXPORTER_OTLP_*`` variables: endpoint, headers,
timeout…) or ``console``; ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_SAMPLER`` and ``OTEL_BSP_*`` (the batch processor) work as the SDK defines
them. ``OTEL_SDK_DISABLED=true`` turns it off whatever else is set.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import Link, Status, StatusCode
from opentelemetry.trace import Span as Span
from opentelemetry.trace import SpanKind as SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from jobplane.logs import fields

log = logging.getLogger(__name__)

TRACEPARENT = "traceparent"

_propagator = TraceContextTextMapPropagator()
_provider: TracerProvider | None = None
_tracer: trace.Tracer | None = None
# The trace id a root span must get (the job's), read by the id generator below.
_root_trace_id: ContextVar[int] = ContextVar("jobplane_root_trace_id", default=0)

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_HEX_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


class _NoSpan(AbstractContextManager[None]):
    """What every helper returns while tracing is off: enters to None, does nothing."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None


_NO_SPAN = _NoSpan()


class _JobTraceIds(RandomIdGenerator):
    """Root spans take the job's trace id (set by :func:`span` for the one span it starts)."""

    def generate_trace_id(self) -> int:
        return _root_trace_id.get() or super().generate_trace_id()


def is_enabled() -> bool:
    return _tracer is not None


def otel_trace_id(trace_id: str) -> int:
    """The OpenTelemetry trace id of a Jobplane trace id: the same 128 bits when it is 32
    hex digits (what Jobplane makes), else the first 128 bits of its SHA-256."""
    lowered = trace_id.lower()
    if _HEX_TRACE_ID.match(lowered) and int(lowered, 16):
        return int(lowered, 16)
    return int.from_bytes(hashlib.sha256(trace_id.encode()).digest()[:16], "big") or 1


def traceparent_trace_id(traceparent: str) -> str | None:
    """The trace id (32 hex digits) of a valid W3C ``traceparent`` value, else None."""
    match = _TRACEPARENT.match(traceparent.strip().lower())
    if match is None or not int(match.group(1), 16) or match.group(0).startswith("ff"):
        return None
    return match.group(1)


# -- configuration ------------------------------------------------------------------------------


def exporters_from_env(environ: Mapping[str, str] = os.environ) -> list[SpanExporter]:
    """The exporters ``OTEL_TRACES_EXPORTER`` names (none by default)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = [n.strip().lower() for n in environ.get("OTEL_TRACES_EXPORTER", "none").split(",")]
    exporters: list[SpanExporter] = []
    for name in names:
        if name in ("", "none"):
            continue
        if name == "otlp":
            protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get(
                "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
            )
            if protocol.strip() != "http/protobuf":
                raise ValueError(
                    f"OTLP protocol {protocol!r} is not supported: Jobplane exports OTLP over "
                    "http/protobuf (port 4318 of a collector)"
                )
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporters.append(OTLPSpanExporter())  # endpoint, headers…: OTEL_EXPORTER_OTLP_*
        elif name == "console":
            exporters.append(ConsoleSpanExporter())
        else:
            raise ValueError(
                f"OTEL_TRACES_EXPORTER {name!r} is not supported (otlp, console, none)"
            )
    return exporters


def configure(service: str, processors: Iterable[SpanProcessor] | None = None) -> bool:
    """Turn tracing on for this process when ``OTEL_TRACES_EXPORTER`` asks for it (or with
    the given ``processors``, e.g. an in-memory exporter's in tests). True if on."""
    global _provider, _tracer
    if processors is None:
        processors = [BatchSpanProcessor(exporter) for exporter in exporters_from_env()]
    processors = list(processors)
    if not processors:
        return False
    attributes: dict[str, Any] = {}
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attributes[SERVICE_NAME] = f"jobplane-{service}"
    provider = TracerProvider(resource=Resource.create(attributes), id_generator=_JobTraceIds())
    for processor in processors:
        provider.add_span_processor(processor)
    _provider = provider
    _tracer = provider.get_tracer("jobplane")
    log.info("tracing on", extra=fields(service=service))
    return True


def shutdown() -> None:
    """Export what is left and turn tracing off."""
    global _provider, _tracer
    provider, _provider, _tracer = _provider, None, None
    if provider is not None:
        provider.shutdown()


@contextlib.contextmanager
def traced(service: str) -> Iterator[bool]:
    """Tracing as the environment says, for the block (yields whether it is on); the spans
    left are exported on the way out. Several services in one process (tests) share the
    first one's configuration."""
    if _tracer is not None:
        yield True
        return
    on = configure(service)
    try:
        yield on
    finally:
        if on:
            shutdown()


def simple_processor(exporter: SpanExporter) -> SpanProcessor:
    """A processor that exports each span as it ends (tests: the in-memory exporter)."""
    return SimpleSpanProcessor(exporter)


# -- spans ----------------------------------------------------------------------------------


def span(
    name: str,
    trace_id: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    traceparent: str | None = None,
    attributes: Mapping[str, str | int] | None = None,
) -> AbstractContextManager[Span | None]:
    """A span of the job whose trace id is ``trace_id``, current for the block (its
    exception recorded). Its parent: ``traceparent`` if of the same trace, else the current
    span if of the same trace, else none (a root, with the job's trace id)."""
    tracer = _tracer
    if tracer is None:
        return _NO_SPAN
    return _start(tracer, name, trace_id, kind, traceparent, attributes)


def _start(
    tracer: trace.Tracer,
    name: str,
    trace_id: str,
    kind: SpanKind,
    traceparent: str | None,
    attributes: Mapping[str, str | int] | None,
) -> AbstractContextManager[Span]:
    wanted = otel_trace_id(trace_id)
    parent: Context | None = None
    links: list[Link] = []
    if traceparent:
        remote = _propagator.extract({TRACEPARENT: traceparent})
        remote_span = trace.get_current_span(remote).get_span_context()
        if remote_span.is_valid and remote_span.trace_id == wanted:
            parent = remote
        elif remote_span.is_valid:
            links.append(Link(remote_span))  # another trace (the caller's own): a link
    if parent is None:
        current = trace.get_current_span().get_span_context()
        if not (current.is_valid and current.trace_id == wanted):
            parent = Context()  # a root of the job's trace
    token = _root_trace_id.set(wanted)
    try:
        started = tracer.start_span(
            name,
            context=parent,
            kind=kind,
            attributes={"jobplane.trace_id": trace_id, **(attributes or {})},
            links=links,
        )
    finally:
        _root_trace_id.reset(token)
    return trace.use_span(started, end_on_exit=True)


def error_status(description: str) -> Status:
    """A span's status for a failure that raised nothing (an attempt the backend failed)."""
    return Status(StatusCode.ERROR, description)


def current_traceparent() -> str | None:
    """The ``traceparent`` of the current span (None while tracing is off or outside one)."""
    if _tracer is None:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get(TRACEPARENT)


def http_headers() -> dict[str, str]:
    """Headers that carry the current span to an HTTP server (none while tracing is off)."""
    traceparent = current_traceparent()
    return {TRACEPARENT: traceparent} if traceparent else {}


def kafka_headers(topic: str, trace_id: str, job_id: str, attempt: int) -> list[tuple[str, bytes]]:
    """A producer span for one event to ``topic``, and the header that carries it (none
    while tracing is off). The span ends here: it marks the hand-over to Kafka."""
    if _tracer is None:
        return []
    attributes = _messaging(topic, "publish", job_id, attempt)
    with span(f"publish {topic}", trace_id, kind=SpanKind.PRODUCER, attributes=attributes):
        traceparent = current_traceparent()
    return [(TRACEPARENT, traceparent.encode())] if traceparent else []


def consume_span(
    topic: str,
    headers: Iterable[tuple[str, bytes]],
    trace_id: str,
    job_id: str,
    attempt: int,
) -> AbstractContextManager[Span | None]:
    """The span of handling one consumed event, child of its producer's span."""
    if _tracer is None:
        return _NO_SPAN
    traceparent = next((v.decode("latin-1") for k, v in headers if k == TRACEPARENT), None)
    return span(
        f"process {topic}",
        trace_id,
        kind=SpanKind.CONSUMER,
        traceparent=traceparent,
        attributes=_messaging(topic, "process", job_id, attempt),
    )


def _messaging(topic: str, operation: str, job_id: str, attempt: int) -> dict[str, str | int]:
    return {
        "messaging.system": "kafka",
        "messaging.destination.name": topic,
        "messaging.operation.type": operation,
        "messaging.kafka.message.key": job_id,
        "jobplane.job_id": job_id,
        "jobplane.attempt": attempt,
    }
