"""The backend's result callback: ``POST /v1/jobs/{job_id}/result`` with the attempt's token.

Every outcome goes through a guarded store transition or a status check, so a replayed or
late callback changes nothing; the answer says whether it was recorded and why not.
"""

from __future__ import annotations

import json
import logging

from fastapi import APIRouter, HTTPException, Request, status
from jobplane.events import Failure, FailureKind
from jobplane.jobs import OPEN_STATUSES, Job, JobStatus
from jobplane.logs import bind, fields
from jobplane.security import secret_matches
from jobplane.store import JobStore

from jobplane_gateway.api.deps import BusDep, CallbackTokenDep, StoreDep
from jobplane_gateway.api.routes.jobs import JobIdPath
from jobplane_gateway.publishing import EventBus
from jobplane_gateway.schemas import ResultIn, ResultRecorded

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/jobs", tags=["results"])

DEFAULT_FAILURE_MESSAGE = "the backend reported a failure without details"


@router.post("/{job_id}/result")
async def report_result(
    job_id: JobIdPath,
    body: ResultIn,
    token: CallbackTokenDep,
    store: StoreDep,
    bus: BusDep,
    request: Request,
) -> ResultRecorded:
    """Record an attempt's outcome as the app backend reports it."""
    job = await store.get_job(job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no job '{job_id}'")
    attempt = job.attempt_info(body.attempt)
    if attempt is None or not secret_matches(token, attempt.callback_token_hash):
        log.warning("callback refused: bad token", extra=fields(attempt=body.attempt))
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=f"invalid callback token for attempt {body.attempt}",
            headers={"WWW-Authenticate": "Bearer"},
        )
    # The callback joins its job's trace unless the backend passed the trace id along.
    if not request.state.trace_supplied:
        request.state.trace_id = job.trace_id or request.state.trace_id
    trace_id: str = request.state.trace_id
    with bind(trace_id=trace_id, job_id=job_id):
        if body.status == "succeeded":
            outcome = await _succeeded(store, bus, job, body, trace_id)
        else:
            outcome = await _failed(bus, job, body, trace_id)
        log.info(
            "callback",
            extra=fields(
                attempt=body.attempt,
                reported=body.status,
                recorded=outcome.recorded,
                detail=outcome.detail,
            ),
        )
        return outcome


async def _succeeded(
    store: JobStore,
    bus: EventBus,
    job: Job,
    body: ResultIn,
    trace_id: str,
) -> ResultRecorded:
    result_text = json.dumps(body.result, ensure_ascii=False, separators=(",", ":"))
    completed = await store.complete(job.job_id, body.attempt, result_text)
    if completed is not None:
        await bus.publish(bus.topics.completed, completed.completed_event(trace_id))
        return ResultRecorded(recorded=True, detail="result recorded: the job succeeded")
    current = await store.get_job(job.job_id)
    assert current is not None  # jobs are never deleted
    if current.status is JobStatus.SUCCEEDED and current.attempt == body.attempt:
        # A replay (perhaps our answer to the first call was lost after the store write but
        # before Kafka's ack): announce the completion again, downstream is idempotent.
        await bus.publish(bus.topics.completed, current.completed_event(trace_id))
        return ResultRecorded(recorded=False, detail="already recorded: the job succeeded")
    return ResultRecorded(recorded=False, detail=_why_unchanged(current, body.attempt))


async def _failed(bus: EventBus, job: Job, body: ResultIn, trace_id: str) -> ResultRecorded:
    if job.status not in OPEN_STATUSES or job.attempt != body.attempt:
        return ResultRecorded(recorded=False, detail=_why_unchanged(job, body.attempt))
    error = body.error
    failure = Failure(
        kind=FailureKind.REPORTED,
        message=error.message if error and error.message else DEFAULT_FAILURE_MESSAGE,
        retryable=error.retryable if error else True,
    )
    # The status stays as it is: the retry service's guarded transition decides.
    await bus.publish(bus.topics.failed, job.failed_event(failure, trace_id))
    return ResultRecorded(
        recorded=True,
        detail="failure recorded: the retry policy decides what follows",
    )


def _why_unchanged(job: Job, attempt: int) -> str:
    if job.attempt != attempt:
        return (
            f"changes nothing: attempt {attempt} is over, the job is at attempt "
            f"{job.attempt} ({job.status.value})"
        )
    if job.status.finished:
        return f"changes nothing: the job is {job.status.value} already"
    return f"changes nothing: attempt {attempt} is not open (the job is {job.status.value})"
