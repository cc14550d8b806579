"""Trace ids and one JSON access log line per request.

Every request runs with its trace id bound to the log context: the ``X-Trace-Id`` header
when the caller sent a sane one, else the trace id of a W3C ``traceparent`` header (a caller
that traces with OpenTelemetry: the job joins its trace), a new id otherwise. The id is
echoed in the response headers and kept in ``request.state.trace_id``;
``request.state.trace_supplied`` says whether the caller sent it in ``X-Trace-Id``. A route
that learns the job id puts it in ``request.state.job_id`` for the access line.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

from jobplane import tracing
from jobplane.logs import HTTP_TRACE_HEADER, bind, fields, new_trace_id
from jobplane.tracing import Span, SpanKind
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("jobplane_gateway.access")

_TRACE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_HEADER = HTTP_TRACE_HEADER.lower().encode()
_TRACEPARENT = tracing.TRACEPARENT.encode()


class TraceMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = traceparent = None
        for name, value in scope["headers"]:
            if name == _HEADER:
                supplied = value.decode("latin-1")
            elif name == _TRACEPARENT:
                traceparent = value.decode("latin-1")
        trace_supplied = supplied is not None and _TRACE_ID.match(supplied) is not None
        trace_id = supplied if trace_supplied and supplied else None
        if trace_id is None and traceparent is not None:
            trace_id = tracing.traceparent_trace_id(traceparent)
        trace_id = trace_id or new_trace_id()
        state: dict[str, Any] = scope.setdefault("state", {})
        state["trace_id"] = trace_id
        state["trace_supplied"] = trace_supplied
        status = 500
        started = False

        async def send_with_trace(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != _HEADER]
                headers.append((_HEADER, state["trace_id"].encode()))
                message = {**message, "headers": headers}
            await send(message)

        begin = time.perf_counter()
        method = scope["method"]
        # A server span while tracing is on: in the request's trace id, child of the caller's
        # traceparent when of the same trace (a backend's callback sending the dispatch's back).
        with (
            bind(trace_id=trace_id),
            tracing.span(
                f"{method} {scope['path']}",
                trace_id,
                kind=SpanKind.SERVER,
                traceparent=traceparent,
                attributes={"http.request.method": method, "url.path": scope["path"]},
            ) as span,
        ):
            try:
                await self.app(scope, receive, send_with_trace)
            except Exception:
                log.exception("unhandled error", extra=fields(path=scope["path"]))
                if not started:
                    await _internal_error(send_with_trace)
            finally:
                job_id = state.get("job_id") or scope.get("path_params", {}).get("job_id")
                if span is not None:
                    _describe(span, scope, status, job_id)
                # A route may have re-bound the trace id (a callback joins its job's trace).
                with bind(trace_id=state["trace_id"], job_id=job_id):
                    log.info(
                        "request",
                        extra=fields(
                            method=scope["method"],
                            path=scope["path"],
                            status=status,
                            duration_ms=round((time.perf_counter() - begin) * 1000, 1),
                        ),
                    )


def _describe(span: Span, scope: Scope, status: int, job_id: str | None) -> None:
    route = getattr(scope.get("route"), "path", None)
    if route:  # the template, not the path: one span name for every job
        span.update_name(f"{scope['method']} {route}")
        span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status)
    if job_id:
        span.set_attribute("jobplane.job_id", job_id)


async def _internal_error(send: Send) -> None:
    await send_json(send, 500, {"detail": "internal error"})


async def send_json(
    send: Send, status: int, content: Any, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    """Answer with ``content`` as JSON, straight at the ASGI level (outside the app)."""
    body = json.dumps(content).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
