"""Job submission and status, for apps."""

from __future__ import annotations

import logging
import uuid
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Path, Request, Response, status
from fastapi.responses import JSONResponse
from jobplane import codec, metrics
from jobplane.events import JobRequested
from jobplane.jobs import Job
from jobplane.logs import bind, fields
from jobplane.store import NewJob, utcnow
from jobplane.validation import JOB_ID_PATTERN

from jobplane_gateway import operations
from jobplane_gateway.api.deps import (
    JSON_BODY,
    AppDep,
    AppOrAdminDep,
    BusDep,
    SettingsDep,
    StoreDep,
    TraceIdDep,
)
from jobplane_gateway.api.listing import DEFAULT_PAGE, Cursor, JobFiltersDep, Limit, job_page
from jobplane_gateway.api.responses import AUTH_ERRORS, BODY_ERRORS, cancel_errors, errors
from jobplane_gateway.schemas import (
    IDEMPOTENCY_KEY_PATTERN,
    JobAccepted,
    JobList,
    JobOut,
    JobSubmit,
    check_size,
)

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description=(
            "Printable ASCII, 1-200 characters. Resending a request with the same key "
            "returns the same job; the same key with another body is a 409."
        ),
    ),
]
JobIdPath = Annotated[str, Path(pattern=JOB_ID_PATTERN)]


def new_job_id() -> str:
    return uuid.uuid4().hex


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    responses=errors(*AUTH_ERRORS, 403, 409, 413, *BODY_ERRORS),
    dependencies=[JSON_BODY],
)
async def submit_job(
    body: JobSubmit,
    app: AppDep,
    store: StoreDep,
    bus: BusDep,
    settings: SettingsDep,
    trace_id: TraceIdDep,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> JobAccepted:
    """Accept a job: it is stored (owing its ``job.requested`` event), the event is
    published, and the answer is ``202`` without waiting for Kafka's ack.

    The job is stored first and owes its event (``announce_due_at``), so it is durable when
    the answer goes: an event Kafka does not acknowledge (within ``PUBLISH_TIMEOUT_SECONDS``,
    in the background) is published by the outbox relay shortly. Kafka being away is no
    error here: answering one would make a client without Idempotency-Key submit a second
    job. ``503`` means nothing was stored (the job store was unavailable): retry. A retried
    request with the same Idempotency-Key returns the same job; with another body it is a
    ``409``. A disabled app's jobs are refused with ``403``.
    """
    if app.disabled:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=(
                f"app '{app.app_id}' is disabled: it cannot submit jobs until an "
                "administrator enables it again"
            ),
        )
    payload = body.payload_text()
    check_size(payload, "payload", settings.max_payload_bytes, "MAX_PAYLOAD_BYTES")
    if await store.cached_user(app.app_id, body.user_id) is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=(
                f"user '{body.user_id}' is not registered: register it with "
                f"PUT /v1/users/{body.user_id} first"
            ),
        )
    new = NewJob(
        job_id=new_job_id(),
        app_id=app.app_id,
        user_id=body.user_id,
        job_type=body.job_type,
        payload=payload,
        timeout_seconds=body.timeout_seconds,
        trace_id=trace_id,
        idempotency_key=idempotency_key,
    )
    # Nothing is stored that cannot be announced: encode the event before the write (the
    # bytes are what is published: the event is built and encoded once per submit).
    event = Job.from_document(new.document(utcnow(), utcnow())).requested_event()
    encoded = _encoded(event)
    job, created = await store.create_job(new, announce_grace=settings.announce_grace)
    request.state.job_id = job.job_id
    with bind(job_id=job.job_id):
        if not created:
            if not _same_request(job, new):
                raise HTTPException(
                    status.HTTP_409_CONFLICT,
                    detail=(
                        f"Idempotency-Key '{idempotency_key}' was used for another request "
                        f"(job {job.job_id}); use a new key for a new job"
                    ),
                )
            # The first request stored the job and owes its event: nothing to publish.
            log.info("job re-requested", extra=fields(status=job.status.value))
        else:
            metrics.JOBS_SUBMITTED.labels(job.app_id, job.job_type).inc()
            await bus.announce_soon(bus.topics.requested, event, encoded)
            # DEBUG: the access line of the request says it at INFO already (status, job id);
            # a failed announce logs its own warning.
            log.debug("job accepted", extra=fields(app_id=app.app_id, job_type=job.job_type))
    status_url = f"{settings.public_url.rstrip('/')}/v1/jobs/{job.job_id}"
    response.headers["Location"] = status_url
    return JobAccepted(job_id=job.job_id, status=job.status, status_url=status_url)


@router.get("", responses=errors(*AUTH_ERRORS, 422))
async def list_own_jobs(
    app: AppDep,
    store: StoreDep,
    filters: JobFiltersDep,
    limit: Limit = DEFAULT_PAGE,
    cursor: Cursor = None,
) -> JobList:
    """The calling app's jobs, newest first, filtered by every parameter given. Page on
    with ``next_cursor`` until it is null."""
    return await job_page(store, filters, app.app_id, limit, cursor)


@router.get("/{job_id}", responses=errors(*AUTH_ERRORS, 404, 422))
async def get_job(job_id: JobIdPath, caller: AppOrAdminDep, store: StoreDep) -> JobOut:
    """The job's status, attempts (with each attempt's report), result and whether the
    user has been notified: the calling app's jobs, or any job with the admin key."""
    if caller is None:
        job = await store.get_job(job_id)
    else:
        job = await store.get_job_of_app(caller.app_id, job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no job '{job_id}'")
    return JobOut.of(job)


CANCEL_DOC = """

A `queued` or `retry_scheduled` job never runs again. A `dispatched` or `running` attempt's
backend is not called off: its later callback is answered `200`, kept in the attempt's
history, and changes nothing (no result, no event). No e-mail goes to the user about a
cancel: the caller cancelled, and tells its user if it wants to; the status shows
`cancelled`. A finished job (succeeded, dead, cancelled) is a `409` naming its status."""


@router.post(
    "/{job_id}/cancel",
    responses=cancel_errors(*AUTH_ERRORS, 404, 422),
    response_model=JobOut,
    description="Cancel one of the calling app's jobs: `200` with its status (`cancelled`)."
    + CANCEL_DOC,
)
async def cancel_job(job_id: JobIdPath, app: AppDep, store: StoreDep) -> JobOut | JSONResponse:
    """Cancel one of the calling app's jobs: `200` with its status (`cancelled`)."""
    try:
        job = await operations.cancel(
            store, job_id, app_id=app.app_id, by=operations.by_app(app.app_id)
        )
    except operations.CancelRefusedError as exc:
        return exc.response()
    return JobOut.of(job)


def _encoded(event: JobRequested) -> bytes:
    try:
        return codec.encode(event)
    except Exception as exc:  # fastavro refuses in many ways; each means "not this job"
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"the job cannot be encoded as a job.requested event: {exc}",
        ) from exc


def _same_request(job: Job, new: NewJob) -> bool:
    return (job.user_id, job.job_type, job.payload, job.timeout_seconds) == (
        new.user_id,
        new.job_type,
        new.payload,
        new.timeout_seconds,
    )
