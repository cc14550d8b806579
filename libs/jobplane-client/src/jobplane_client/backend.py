"""For app backends: read Jobplane's dispatch request, check it, and report the outcome.

Jobplane POSTs each attempt of a job to the app's ``backend_url`` (:class:`DispatchRequest`).
The backend answers at once (202: accepted), works, then POSTs the outcome to the
request's ``callback_url`` with its ``callback_token`` (:class:`ResultReporter`).

Checks before any work (:func:`read_dispatch`):

- the signature: an app with a webhook secret gets every dispatch signed with it (the
  ``Jobplane-Signature`` header of the webhooks, over the raw body), so a request that did
  not come from Jobplane is refused before its callback token is ever used;
- the callback URL: it must be the platform's (``gateway_url``) result route of this very
  job, so that a backend never hands a token to another host;
- a callback token is present. (The platform itself checks the token on the callback: only
  the newest token of the attempt is accepted.)

The same ``(job_id, attempt)`` may arrive twice: treat it as the idempotency key of the work.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field, ValidationError

from jobplane_client.webhooks import (
    DEFAULT_TOLERANCE_SECONDS,
    SIGNATURE_HEADER,
    WebhookSignatureError,
    verify,
)

log = logging.getLogger(__name__)

TRACE_HEADER = "X-Trace-Id"
TRACEPARENT_HEADER = "traceparent"  # W3C trace context: the callback joins the dispatch's span


class DispatchRequest(BaseModel):
    """What Jobplane POSTs to the app's ``backend_url`` for each attempt."""

    job_id: str
    app_id: str
    user_id: str
    attempt: int = Field(ge=1)
    job_type: str
    payload: dict[str, Any]
    callback_url: str
    callback_token: str = Field(min_length=1)
    deadline: datetime
    # From the dispatch's headers (not its body), sent back on the callback so that the
    # result lands in the attempt's trace.
    trace_id: str | None = Field(default=None, exclude=True)
    traceparent: str | None = Field(default=None, exclude=True)


class DispatchError(ValueError):
    """Not a genuine dispatch request of this platform: answer 4xx, do no work."""


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower())
    return value


def read_dispatch(
    body: bytes,
    headers: Mapping[str, str],
    *,
    secret: str | None = None,
    gateway_url: str | None = None,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> DispatchRequest:
    """The dispatch request in ``body`` (the raw bytes received), checked: signed with
    ``secret`` (the app's webhook secret) when given, its callback to ``gateway_url`` (the
    platform's public URL) when given. Raises :class:`DispatchError`."""
    if secret is not None:
        try:
            verify(
                secret,
                body,
                _header(headers, SIGNATURE_HEADER),
                tolerance_seconds=tolerance_seconds,
            )
        except WebhookSignatureError as exc:
            raise DispatchError(f"dispatch not signed by Jobplane: {exc}") from exc
    try:
        dispatch = DispatchRequest.model_validate_json(body)
    except ValidationError as exc:
        raise DispatchError(f"not a dispatch request: {exc.error_count()} problem(s)") from exc
    if gateway_url is not None:
        expected = f"{gateway_url.rstrip('/')}/v1/jobs/{dispatch.job_id}/result"
        if dispatch.callback_url != expected:
            raise DispatchError(f"unexpected callback URL {dispatch.callback_url!r}")
    return dispatch.model_copy(
        update={
            "trace_id": _header(headers, TRACE_HEADER),
            "traceparent": _header(headers, TRACEPARENT_HEADER),
        }
    )


@dataclass(frozen=True, slots=True)
class CallbackAnswer:
    """The platform's answer to a result callback."""

    status_code: int
    recorded: bool
    detail: str


class ReportError(Exception):
    """The result could not be handed over (the platform refused it, or stayed
    unreachable through every try). The attempt then times out and is retried."""


class ResultReporter:
    """POSTs attempts' outcomes to their callback URLs. Tries again on network errors and
    5xx (the gateway restarting, its store away) with a doubling wait; a 4xx is final."""

    def __init__(
        self, http: httpx.AsyncClient, *, tries: int = 6, first_wait_seconds: float = 0.5
    ) -> None:
        self.http = http
        self.tries = tries
        self.first_wait_seconds = first_wait_seconds

    async def succeeded(
        self, dispatch: DispatchRequest, result: Any, *, trace_id: str | None = None
    ) -> CallbackAnswer:
        """Report success with ``result`` (any JSON value)."""
        body = {"attempt": dispatch.attempt, "status": "succeeded", "result": result}
        return await self._report(dispatch, body, trace_id)

    async def failed(
        self,
        dispatch: DispatchRequest,
        message: str,
        *,
        retryable: bool = True,
        trace_id: str | None = None,
    ) -> CallbackAnswer:
        """Report failure; ``retryable=False`` ends the job (no more retries)."""
        body = {
            "attempt": dispatch.attempt,
            "status": "failed",
            "error": {"message": message, "retryable": retryable},
        }
        return await self._report(dispatch, body, trace_id)

    async def _report(
        self, dispatch: DispatchRequest, body: dict[str, Any], trace_id: str | None
    ) -> CallbackAnswer:
        headers = {"Authorization": f"Bearer {dispatch.callback_token}"}
        trace_id = trace_id or dispatch.trace_id
        if trace_id:
            headers[TRACE_HEADER] = trace_id
        if dispatch.traceparent:
            headers[TRACEPARENT_HEADER] = dispatch.traceparent
        wait = self.first_wait_seconds
        problem = ""
        for attempt in range(1, self.tries + 1):
            try:
                response = await self.http.post(dispatch.callback_url, json=body, headers=headers)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 500:
                    return _answer(response)
                problem = f"HTTP {response.status_code}"
            log.warning("result callback failed (%s), try %d", problem, attempt)
            if attempt < self.tries:
                await asyncio.sleep(wait)
                wait *= 2
        raise ReportError(f"job {dispatch.job_id} attempt {dispatch.attempt}: {problem}")


def _answer(response: httpx.Response) -> CallbackAnswer:
    try:
        data = response.json()
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    detail = data.get("detail", response.text)
    if response.is_error:
        raise ReportError(f"the platform refused the result: {response.status_code} {detail}")
    return CallbackAnswer(response.status_code, bool(data.get("recorded")), str(detail))


Status = Literal["succeeded", "failed"]
