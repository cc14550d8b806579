"""JSON log lines that carry the trace id and job id of the work in hand.

The seeds ask for a TrackID on every log line of every service: the trace id travels in
Kafka headers and HTTP headers, and :func:`bind` puts it (with the job id) into a context
variable so every line logged while handling that job carries it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

TRACE_HEADER = "trace_id"
HTTP_TRACE_HEADER = "X-Trace-Id"

_context: ContextVar[dict[str, str]] = ContextVar("jobplane_log_context", default={})  # noqa: B039


def new_trace_id() -> str:
    return uuid.uuid4().hex


@contextlib.contextmanager
def bind(**fields: str | None) -> Iterator[None]:
    """Add fields (trace_id, job_id, …) to every log line written inside the block."""
    merged = {**_context.get(), **{k: v for k, v in fields.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def current(field: str) -> str | None:
    return _context.get().get(field)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
            **_context.get(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            line.update(extra)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure(service: str, level: str = "INFO") -> None:
    """Send every logger's records to stdout as JSON lines."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Client libraries are chatty at INFO about connections; their warnings still show.
    for noisy in ("aiokafka", "kafka", "pymongo", "httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def fields(**values: Any) -> dict[str, Any]:
    """`extra=` argument for structured fields: ``log.info("sent", extra=fields(to=n))``."""
    return {"fields": values}
