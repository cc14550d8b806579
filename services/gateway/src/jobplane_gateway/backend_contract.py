"""The dispatcher → app backend call, described in the gateway's OpenAPI document as an
OpenAPI 3.1 ``webhooks`` entry: a backend developer reads what the platform sends and what
it expects back in the same document as the rest of the API.

The dispatcher builds the request (``jobplane_dispatcher.dispatch.backend_body``) and
classifies the answer (``jobplane_dispatcher.backend.classify_response``); these models
describe that contract, they are not used to send it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Header, status
from jobplane.logs import HTTP_TRACE_HEADER
from pydantic import BaseModel, ConfigDict, Field

from jobplane_gateway.schemas import ReportedError

WEBHOOK = "job-dispatch"
OUTCOME_WEBHOOK = "job-outcome"
_SIGNATURE_DOC = (
    "With the app's webhook secret: `t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw "
    'body>">`. Verify it over the raw bytes (`jobplane_client.webhooks.verify`).'
)


class DispatchRequest(BaseModel):
    """What the platform POSTs to the app's ``backend_url`` for each attempt."""

    job_id: str
    app_id: str
    user_id: str
    attempt: int = Field(
        ge=1,
        description=(
            "1 for the first attempt, then one more per retry. The same (job_id, attempt) "
            "may arrive twice (a dispatcher that stopped before the answer): treat it as "
            "the idempotency key of the work."
        ),
    )
    job_type: str
    payload: dict[str, Any] = Field(description="The payload as the app submitted it.")
    callback_url: str = Field(description="Where to POST the attempt's result.")
    callback_token: str = Field(
        description=(
            "The bearer token of the result callback (`Authorization: Bearer <token>`). "
            "Only the newest token of an attempt is valid."
        )
    )
    deadline: datetime = Field(
        description="When the attempt times out: a result after it is too late (UTC)."
    )


class DoneAtOnce(BaseModel):
    """A backend that finished while answering: the outcome in the answer itself."""

    status: Literal["succeeded", "failed"]
    result: Any = Field(default=None, description='With "succeeded": the job\'s result.')
    error: ReportedError | None = Field(
        default=None,
        description='With "failed": what went wrong; "retryable": false ends the job.',
    )


_ANSWERS: dict[int | str, dict[str, Any]] = {
    202: {
        "description": (
            "Accepted: the backend works and POSTs the result to `callback_url` with "
            "`callback_token` before `deadline`. The body is ignored."
        )
    },
    200: {
        "model": DoneAtOnce,
        "description": (
            'Done already: `{"status": "succeeded", "result": ...}` or `{"status": "failed", '
            '"error": {"message", "retryable"}}`. Any other 2xx body counts as accepted.'
        ),
    },
    408: {"description": "Retried later (as 429 and every 5xx)."},
    429: {"description": "Retried later."},
    400: {
        "description": (
            "Any other 4xx: the attempt failed and is not retried (the job is dead, the "
            "administrators are alerted)."
        )
    },
    500: {
        "description": (
            "Any 5xx, no answer in time, or no connection: the attempt failed and is "
            "retried after a delay (5 retries)."
        )
    },
}


class _Described(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OutcomeError(_Described):
    kind: str | None = Field(description="The last failure's kind (reported, http_status, …).")
    message: str


class OutcomeJob(_Described):
    job_id: str
    app_id: str
    user_id: str
    job_type: str
    status: Literal["succeeded", "dead"]
    attempt: int
    trace_id: str
    result: Any = Field(default=None, description='With "succeeded": the job\'s result.')
    error: OutcomeError | None = Field(default=None, description='With "dead": why.')


class OutcomeEvent(_Described):
    """What the platform POSTs to an app's ``webhook_url`` when one of its jobs ends."""

    id: str = Field(
        description="`<job_id>:<outcome>`: the same on every try of one delivery (drop repeats)."
    )
    type: Literal["job.succeeded", "job.dead"]
    occurred_at: datetime
    job: OutcomeJob


_OUTCOME_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"description": "Any 2xx: delivered; the outcome is not sent again."},
    500: {
        "description": (
            "Anything else (any other status, no answer within WEBHOOK_TIMEOUT_SECONDS, no "
            "connection): tried again later, the wait doubling, WEBHOOK_MAX_ATTEMPTS in all."
        )
    },
}


def install(app: FastAPI) -> None:
    @app.webhooks.post(OUTCOME_WEBHOOK, responses=_OUTCOME_ANSWERS)
    def job_outcome(
        body: OutcomeEvent,
        jobplane_signature: Annotated[
            str, Header(alias="Jobplane-Signature", description=_SIGNATURE_DOC)
        ],
        jobplane_webhook_id: Annotated[
            str, Header(alias="Jobplane-Webhook-Id", description="The body's `id`.")
        ],
        jobplane_webhook_attempt: Annotated[
            int, Header(alias="Jobplane-Webhook-Attempt", description="1 for the first try.")
        ],
    ) -> None:
        """The platform → app notice of an outcome: one POST to the app's ``webhook_url``
        when a job of the app succeeds or dies, signed with the app's webhook secret, once
        per job and outcome (recorded like the e-mails), tried again while it fails."""

    @app.webhooks.post(WEBHOOK, status_code=status.HTTP_202_ACCEPTED, responses=_ANSWERS)
    def job_dispatch(
        body: DispatchRequest,
        x_trace_id: Annotated[
            str | None,
            Header(alias=HTTP_TRACE_HEADER, description="The job's trace id, for the logs."),
        ] = None,
        jobplane_signature: Annotated[
            str | None,
            Header(
                alias="Jobplane-Signature",
                description="Present when the app has a webhook secret. " + _SIGNATURE_DOC,
            ),
        ] = None,
    ) -> None:
        """The platform → app backend call: one POST per attempt to the app's
        ``backend_url``. Answer at once (``202``) and report the outcome later through
        ``POST /v1/jobs/{job_id}/result``, or answer ``200`` with the outcome when the work
        is already done."""
