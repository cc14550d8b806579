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
import threading
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

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
        return json_line(line)


# Dates and dataclasses in fields are written with str() as ever, not in orjson's own form.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def json_line(line: dict[str, Any]) -> str:
    """``line`` as compact JSON. orjson writes a line in a fifteenth of the json module's
    time (0.5 against 8 µs), and the gateway, the dispatcher and the notifier each write one
    per job; what orjson refuses (an integer beyond 64 bits, a lone surrogate) the json
    module still writes."""
    try:
        return orjson.dumps(line, default=str, option=_ORJSON_OPTIONS).decode()
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(line, default=str, ensure_ascii=False, separators=(",", ":"))


class RepeatFilter(logging.Filter):
    """Outage logs without the flood: one line per cause per interval, then a recovery line.

    A warning or error is keyed by its ``cause`` field (see ``jobplane.kafka.error_cause``)
    or else by its logger and message template. The first of a key passes; repeats within
    ``interval_s`` are counted and dropped; the first after the interval passes with
    ``repeats_suppressed`` (how many were dropped) added. A line with a ``recovered`` field
    naming a cause (the step that failed works again) passes once, with the outage's
    ``repeats_suppressed`` and ``outage_s``, and ends that cause's suppression; further
    recovery lines for the same outage are dropped. Lines below WARNING that are no
    recovery always pass.
    """

    def __init__(self, interval_s: float = 10.0, max_causes: int = 1000) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.max_causes = max_causes
        # cause -> [first seen, start of the current interval, repeats dropped since then,
        #           repeats dropped since first seen]
        self._causes: dict[str, list[float]] = {}
        self._lock = threading.Lock()  # librdkafka logs from its own threads

    def filter(self, record: logging.LogRecord) -> bool:
        extra = getattr(record, "fields", None)
        extra = extra if isinstance(extra, dict) else {}
        recovered = extra.get("recovered")
        with self._lock:
            if recovered is not None:
                return self._recovery(record, str(recovered), extra)
            if record.levelno < logging.WARNING:
                return True
            cause = str(extra.get("cause") or f"{record.name}:{record.msg}")
            return self._failure(record, cause, extra)

    def _failure(self, record: logging.LogRecord, cause: str, extra: dict[str, Any]) -> bool:
        now = record.created
        state = self._causes.get(cause)
        if state is None:
            if len(self._causes) >= self.max_causes:
                self._forget_old(now)
            self._causes[cause] = [now, now, 0, 0]
            return True
        if now - state[1] < self.interval_s:
            state[2] += 1
            state[3] += 1
            return False
        if state[2]:
            record.fields = {**extra, "repeats_suppressed": int(state[2])}
        state[1], state[2] = now, 0
        return True

    def _recovery(self, record: logging.LogRecord, cause: str, extra: dict[str, Any]) -> bool:
        state = self._causes.pop(cause, None)
        if state is None:
            return False  # this outage's recovery was told already (or nothing was logged)
        record.fields = {
            **extra,
            "repeats_suppressed": int(state[3]),
            "outage_s": round(record.created - state[0], 3),
        }
        return True

    def _forget_old(self, now: float) -> None:
        for cause, state in list(self._causes.items()):
            if now - state[1] >= self.interval_s:
                del self._causes[cause]


def configure(service: str, level: str = "INFO", repeat_interval_s: float = 10.0) -> None:
    """Send every logger's records to stdout as JSON lines, repeats of errors filtered."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    handler.addFilter(RepeatFilter(repeat_interval_s))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # No line says where it was logged from, nor which thread or process wrote it: not
    # gathering them is the logging HOWTO's "Optimization". Walking the stack for the caller
    # was a third of a line's cost (45 against 29 µs), and each service logs a line per job.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    # Client libraries are chatty at INFO about connections; their warnings still show.
    for noisy in ("pymongo", "httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def fields(**values: Any) -> dict[str, Any]:
    """`extra=` argument for structured fields: ``log.info("sent", extra=fields(to=n))``."""
    return {"fields": values}
