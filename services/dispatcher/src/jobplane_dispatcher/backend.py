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
from dataclasses import dataclass
from typing import Any, TypeAlias

import httpx
from jobplane.events import Failure, FailureKind
from jobplane.logs import HTTP_TRACE_HEADER, fields

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
    """One shared HTTP client for every backend call, with explicit timeouts and limits."""

    def __init__(
        self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(
                settings.request_timeout_seconds,
                connect=settings.connect_timeout_seconds,
                # In-flight calls are bounded by the dispatcher's concurrency, which is also
                # the pool size: waiting for a pooled connection is never a backend timeout.
                pool=None,
            ),
            limits=httpx.Limits(
                max_connections=settings.concurrency,
                max_keepalive_connections=min(settings.concurrency, 32),
                keepalive_expiry=30.0,
            ),
            follow_redirects=False,
            transport=transport,
        )

    async def __aenter__(self) -> BackendClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.client.aclose()

    async def dispatch(self, url: str, body: dict[str, Any], trace_id: str) -> Outcome:
        """POST the attempt to the backend; never raises for anything the backend does."""
        try:
            response = await self.client.post(url, json=body, headers={HTTP_TRACE_HEADER: trace_id})
        except httpx.HTTPError as exc:
            outcome: Outcome = Failed(classify_error(exc, url))
        else:
            outcome = classify_response(response)
        log.info("backend called", extra=fields(url=url, outcome=describe(outcome)))
        return outcome


def classify_error(exc: httpx.HTTPError, url: str) -> Failure:
    """A call that got no HTTP answer."""
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        # Refused, DNS failure, no route, connect timeout: the request never reached it.
        return Failure(
            kind=FailureKind.UNREACHABLE,
            message=f"backend {url} unreachable ({detail})",
            retryable=True,
        )
    if isinstance(exc, httpx.TimeoutException):
        return Failure(
            kind=FailureKind.TIMEOUT,
            message=f"backend {url} did not answer in time ({detail})",
            retryable=True,
        )
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
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


def classify_response(response: httpx.Response) -> Outcome:
    """What an HTTP answer of the backend means for the attempt."""
    status = response.status_code
    if status == 202:
        return Accepted(status)
    if 200 <= status < 300:
        return _classify_body(response)
    retryable = status >= 500 or status in RETRYABLE_CLIENT_ERRORS
    return Failed(
        Failure(
            kind=FailureKind.HTTP_STATUS,
            message=f"backend answered HTTP {status}{_excerpt(response)}",
            retryable=retryable,
            http_status=status,
        )
    )


def _classify_body(response: httpx.Response) -> Outcome:
    try:
        body = response.json()
    except ValueError:  # not JSON (or empty): the backend just accepted
        return Accepted(response.status_code)
    if not isinstance(body, dict):
        return Accepted(response.status_code)
    status = body.get("status")
    if status == "succeeded":
        return CompletedAtOnce(json.dumps(body.get("result"), ensure_ascii=False))
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
                http_status=response.status_code,
            )
        )
    return Accepted(response.status_code)


def _excerpt(response: httpx.Response) -> str:
    text = response.text.strip()
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
