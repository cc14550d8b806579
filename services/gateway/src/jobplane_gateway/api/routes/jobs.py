"""Job submission and status, for apps."""

from __future__ import annotations

import logging
import uuid
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Path, Request, Response, status
from jobplane.events import JobRequested
from jobplane.jobs import Job, JobStatus
from jobplane.logs import bind, fields
from jobplane.store import NewJob

from jobplane_gateway.api.deps import (
    AppDep,
    BusDep,
    SettingsDep,
    StoreDep,
    TraceIdDep,
)
from jobplane_gateway.schemas import JOB_ID_PATTERN, JobAccepted, JobOut, JobSubmit

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Resending a request with the same key returns the same job.",
    ),
]
JobIdPath = Annotated[str, Path(pattern=JOB_ID_PATTERN)]


def new_job_id() -> str:
    return uuid.uuid4().hex


@router.post("", status_code=status.HTTP_202_ACCEPTED)
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
    """Accept a job: it is stored, then announced on ``job.requested`` before the answer."""
    if await store.get_user(app.app_id, body.user_id) is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=(
                f"user '{body.user_id}' is not registered: register it with "
                f"PUT /v1/users/{body.user_id} first"
            ),
        )
    job_id = new_job_id()
    if idempotency_key is not None:
        job_id = await store.reserve_idempotency_key(app.app_id, idempotency_key, job_id)
    request.state.job_id = job_id
    with bind(job_id=job_id):
        job, created = await store.create_job(
            NewJob(
                job_id=job_id,
                app_id=app.app_id,
                user_id=body.user_id,
                job_type=body.job_type,
                payload=body.payload_text(),
                timeout_seconds=body.timeout_seconds,
                trace_id=trace_id,
            )
        )
        if not created and not _same_request(job, body):
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                detail=(
                    f"Idempotency-Key '{idempotency_key}' was used for another request "
                    f"(job {job.job_id}); use a new key for a new job"
                ),
            )
        # A replayed request re-announces a job nobody has picked up yet: the first request
        # may have failed between the store write and Kafka's ack. Duplicates are harmless.
        if created or (job.status is JobStatus.QUEUED and job.attempt == 1):
            await bus.publish(bus.topics.requested, _requested(job))
        log.info(
            "job accepted" if created else "job re-requested",
            extra=fields(app_id=app.app_id, job_type=job.job_type, status=job.status.value),
        )
    status_url = f"{settings.public_url.rstrip('/')}/v1/jobs/{job.job_id}"
    response.headers["Location"] = status_url
    return JobAccepted(job_id=job.job_id, status=job.status, status_url=status_url)


@router.get("/{job_id}")
async def get_job(job_id: JobIdPath, app: AppDep, store: StoreDep) -> JobOut:
    """The job's status, attempts, result and notifications (the calling app's jobs only)."""
    job = await store.get_job_of_app(app.app_id, job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no job '{job_id}'")
    return JobOut.of(job)


def _same_request(job: Job, body: JobSubmit) -> bool:
    return (job.user_id, job.job_type, job.payload, job.timeout_seconds) == (
        body.user_id,
        body.job_type,
        body.payload_text(),
        body.timeout_seconds,
    )


def _requested(job: Job) -> JobRequested:
    return JobRequested(
        job_id=job.job_id,
        app_id=job.app_id,
        user_id=job.user_id,
        attempt=1,
        trace_id=job.trace_id,
        job_type=job.job_type,
        payload=job.payload,
        timeout_seconds=job.timeout_seconds,
    )
