"""The HTTP call to an app's backend and what its outcome means for the attempt.

An outcome is one of three: the backend accepted the attempt (its result comes later by
callback), it finished the job at once (200 with a result), or the attempt failed — and then
whether another attempt may help is decided here, from what went wrong:

- the backend could not be reached (refused, DNS, connect timeout) → ``unreachable``, retryable;
- it did not answer in time → ``timeout``, retryable;
- 5xx, 408, 429 → ``http_status``, retryable; any other non-2xx → ``http_status``, not retryable;
- 200 with ``{"status": "failed", "error": {...}}`` → ``reported``, retryable as the backend says.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import aiohttp
from jobplane import metrics, tracing
from jobplane.events import Failure, FailureKind
from jobplane.logs import HTTP_TRACE_HEADER, fields
from jobplane.tracing import SpanKind
from jobplane.validation import json_text
from jobplane_client.webhooks import SIGNATURE_HEADER, sign

from jobplane_dispatcher.config import Settings

log = logging.getLogger(__name__)

RETRYABLE_CLIENT_ERRORS = frozenset({408, 429})
_BODY_EXCERPT = 300


@dataclass(frozen=True, slots=True)
class Accepted:
    """The backend took the attempt; the result comes by callback."""

    http_status: int


@dataclass(frozen=True, slots=True)
class CompletedAtOnce:
    """The backend answered 200 with the job's result."""

    result: str  # JSON text


@dataclass(frozen=True, slots=True)
class Failed:
    failure: Failure


Outcome: TypeAlias = Accepted | CompletedAtOnce | Failed


class BackendClient:
    """One pooled keep-alive HTTP client (aiohttp) for every backend call, with explicit
    timeouts and limits. aiohttp, not httpx: measured with
    ``services/dispatcher/scripts/http_client_bench.py``, it made about 20 times the calls per
    second at 32 in flight for a tenth of the CPU per call."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running event loop, as aiohttp requires.
        if self._session is None:
            s = self.settings
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    # In-flight calls are bounded by the dispatcher's concurrency, which is
                    # also the pool size: waiting for a pooled connection is never a timeout.
                    limit=s.concurrency,
                    limit_per_host=0,
                    keepalive_timeout=30.0,
                ),
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    sock_connect=s.connect_timeout_seconds,
                    sock_read=s.request_timeout_seconds,
                ),
                json_serialize=_json_dumps,
                auto_decompress=True,
            )
        return self._session

    async def __aenter__(self) -> BackendClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def dispatch(
        self,
        url: str,
        body: dict[str, Any],
        trace_id: str,
        *,
        signing_secrets: Sequence[str] = (),
    ) -> Outcome:
        """POST the attempt to the backend; never raises for anything the backend does.
        An app with a webhook secret gets its dispatches signed with it too (the header of
        ``jobplane_client.webhooks``), so that its backend can tell them from forgeries.
        The trace id goes along (``X-Trace-Id``, and ``traceparent`` while tracing is on):
        a backend that sends them back with its callback keeps the callback in the trace."""
        started = time.perf_counter()
        with tracing.span(
            "POST backend",
            trace_id,
            kind=SpanKind.CLIENT,
            attributes={"http.request.method": "POST", "url.full": url},
        ) as span:
            headers = {HTTP_TRACE_HEADER: trace_id, **tracing.http_headers()}
            content: bytes | None = None
            if signing_secrets:
                content = _json_dumps(body).encode()
                headers["Content-Type"] = "application/json"
                headers[SIGNATURE_HEADER] = sign(signing_secrets, content)
            try:
                async with self.session.post(
                    url,
                    json=body if content is None else None,
                    data=content,
                    headers=headers,
                    allow_redirects=False,
                ) as response:
                    content = await response.read()
                    outcome: Outcome = classify_response(response.status, content)
                    if span is not None:
                        span.set_attribute("http.response.status_code", response.status)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                outcome = Failed(classify_error(exc, url))
            if span is not None and isinstance(outcome, Failed):
                span.set_status(tracing.error_status(outcome.failure.message))
        metrics.BACKEND_REQUEST.labels(outcome_name(outcome)).observe(time.perf_counter() - started)
        log.info("backend called", extra=fields(url=url, outcome=describe(outcome)))
        return outcome


def outcome_name(outcome: Outcome) -> str:
    if isinstance(outcome, Accepted):
        return "accepted"
    return "completed" if isinstance(outcome, CompletedAtOnce) else "failed"


def _json_dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def classify_error(exc: Exception, url: str) -> Failure:
    """A call that got no HTTP answer."""
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)):
        # Refused, DNS failure, no route, connect timeout: the request never reached it.
        return Failure(
            kind=FailureKind.UNREACHABLE,
            message=f"backend {url} unreachable ({detail})",
            retryable=True,
        )
    if isinstance(exc, TimeoutError):
        return Failure(
            kind=FailureKind.TIMEOUT,
            message=f"backend {url} did not answer in time ({detail})",
            retryable=True,
        )
    if isinstance(exc, (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError, ValueError)):
        # The app's backend_url itself is wrong: trying again cannot help.
        return Failure(
            kind=FailureKind.UNREACHABLE,
            message=f"backend URL {url!r} is not usable ({detail})",
            retryable=False,
        )
    # Connection reset, closed without an answer, protocol errors: a transient system error.
    return Failure(
        kind=FailureKind.UNREACHABLE,
        message=f"backend {url} failed to answer ({detail})",
        retryable=True,
    )


def classify_response(status: int, content: bytes) -> Outcome:
    """What an HTTP answer of the backend (status and body) means for the attempt."""
    if status == 202:
        return Accepted(status)
    if 200 <= status < 300:
        return _classify_body(status, content)
    retryable = status >= 500 or status in RETRYABLE_CLIENT_ERRORS
    return Failed(
        Failure(
            kind=FailureKind.HTTP_STATUS,
            message=f"backend answered HTTP {status}{_excerpt(content)}",
            retryable=retryable,
            http_status=status,
        )
    )


def _classify_body(status_code: int, content: bytes) -> Outcome:
    try:
        body = json.loads(content)
    except ValueError:  # not JSON (or empty): the backend just accepted
        return Accepted(status_code)
    if not isinstance(body, dict):
        return Accepted(status_code)
    status = body.get("status")
    if status == "succeeded":
        try:
            return CompletedAtOnce(json_text(body.get("result")))
        except ValueError as exc:  # NaN or Infinity, a lone surrogate: a callback's 422
            return Failed(
                Failure(
                    kind=FailureKind.REJECTED,
                    message=f"the backend's result is {exc}",
                    retryable=False,
                    http_status=status_code,
                )
            )
    if status == "failed":
        error = body.get("error")
        error = error if isinstance(error, dict) else {}
        message = error.get("message")
        retryable = error.get("retryable", True)
        return Failed(
            Failure(
                kind=FailureKind.REPORTED,
                message=str(message) if message else "the backend reported a failure",
                retryable=retryable if isinstance(retryable, bool) else True,
                http_status=status_code,
            )
        )
    return Accepted(status_code)


def _excerpt(content: bytes) -> str:
    text = content.decode(errors="replace").strip()
    if not text:
        return ""
    if len(text) > _BODY_EXCERPT:
        text = text[:_BODY_EXCERPT] + "…"
    return f": {text}"


def describe(outcome: Outcome) -> str:
    if isinstance(outcome, Accepted):
        return f"accepted ({outcome.http_status})"
    if isinstance(outcome, CompletedAtOnce):
        return "completed at once"
    failure = outcome.failure
    return f"failed: {failure.kind.value}{' (retryable)' if failure.retryable else ''}"
