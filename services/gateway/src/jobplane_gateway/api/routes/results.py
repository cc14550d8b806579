"""The backend's result callback: ``POST /v1/jobs/{job_id}/result`` with the attempt's token.

The first report of an attempt wins. A report is stored by one guarded write whose filter
holds the whole check: the job at that attempt, the attempt still open, no report yet, and
the attempt's callback token hash. Only when that write matches nothing is the job read, to
say why: unknown job (404), wrong token (401), the same report again (200 "already
recorded", nothing published), a report contradicting the recorded one (409), or an attempt
that is over (200, changes nothing).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, Request, status
from jobplane import metrics
from jobplane.events import Failure, FailureKind
from jobplane.jobs import Job, JobStatus, Report
from jobplane.logs import bind, fields
from jobplane.security import hash_secret, secret_matches
from jobplane.store import JobStore, utcnow

from jobplane_gateway.api.deps import JSON_BODY, BusDep, CallbackTokenDep, SettingsDep, StoreDep
from jobplane_gateway.api.responses import AUTH_ERRORS, BODY_ERRORS, errors
from jobplane_gateway.api.routes.jobs import JobIdPath
from jobplane_gateway.schemas import ResultIn, ResultRecorded, check_size

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/jobs", tags=["results"])


@router.post(
    "/{job_id}/result",
    # 401: the token is not the attempt's; 409: another outcome is recorded already.
    responses=errors(*AUTH_ERRORS, 404, 409, 413, *BODY_ERRORS),
    dependencies=[JSON_BODY],
)
async def report_result(
    job_id: JobIdPath,
    body: ResultIn,
    token: CallbackTokenDep,
    store: StoreDep,
    bus: BusDep,
    settings: SettingsDep,
    request: Request,
) -> ResultRecorded:
    """Record an attempt's outcome as the app backend reports it (the first report wins).

    ``200 recorded`` once the report is stored; its event (``job.completed`` or
    ``job.failed``) is published before the answer, or by the outbox relay if Kafka does not
    acknowledge it in time. Sending the same report again answers ``200`` "already
    recorded" and publishes nothing.
    """
    token_hash = hash_secret(token)
    if body.status == "succeeded":
        result = body.result_text()
        check_size(result, "result", settings.max_result_bytes, "MAX_RESULT_BYTES")
        job = await store.complete(
            job_id,
            body.attempt,
            result,
            callback_token_hash=token_hash,
            announce_grace=settings.announce_grace,
        )
    else:
        job = await store.report_failure(
            job_id,
            body.attempt,
            _failure(body),
            callback_token_hash=token_hash,
            announce_grace=settings.announce_grace,
        )
    if job is None:
        return await _unchanged(store, job_id, body, token, request)
    trace_id = _join_trace(request, job)
    with bind(trace_id=trace_id, job_id=job_id):
        if body.status == "succeeded":
            metrics.JOBS_COMPLETED.labels(job.app_id, job.job_type).inc()
            metrics.observe_outcome("succeeded", job.created_at, job.updated_at)
            acked = await bus.announce(bus.topics.completed, job.completed_event(trace_id))
            outcome = ResultRecorded(recorded=True, detail="result recorded: the job succeeded")
        else:
            metrics.BACKEND_FAILURES.labels(FailureKind.REPORTED.value).inc()
            event = job.failed_event(_failure(body), trace_id)
            acked = await bus.announce(bus.topics.failed, event)
            outcome = ResultRecorded(
                recorded=True, detail="failure recorded: the retry policy decides what follows"
            )
        log.info(
            "callback recorded",
            extra=fields(attempt=body.attempt, reported=body.status, announced=acked),
        )
        return outcome


async def _unchanged(
    store: JobStore, job_id: str, body: ResultIn, token: str, request: Request
) -> ResultRecorded:
    """The guarded write matched nothing: read the job once to tell the caller why."""
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
    with bind(trace_id=_join_trace(request, job), job_id=job_id):
        if attempt.report is None and job.status is JobStatus.CANCELLED:
            return await _record_after_cancel(store, job, body, token)
        if attempt.report is not None:
            if not _same_report(attempt.report, job, body):
                log.warning(
                    "callback contradicts the recorded report",
                    extra=fields(
                        attempt=body.attempt, reported=body.status, recorded=attempt.report.status
                    ),
                )
                raise HTTPException(
                    status.HTTP_409_CONFLICT,
                    detail=(
                        f"attempt {body.attempt} has another outcome recorded already "
                        f"({attempt.report.status}): this report changes nothing"
                    ),
                )
            detail = f"already recorded: attempt {body.attempt} {attempt.report.status}"
        else:
            detail = _why_unchanged(job, body.attempt)
        log.info("callback", extra=fields(attempt=body.attempt, recorded=False, detail=detail))
        return ResultRecorded(recorded=False, detail=detail)


async def _record_after_cancel(
    store: JobStore, job: Job, body: ResultIn, token: str
) -> ResultRecorded:
    """The attempt of a cancelled job reports late: the report is kept in its history and
    changes nothing (no result, no event, no mail)."""
    failure = _failure(body) if body.status == "failed" else None
    report = Report(body.status, utcnow(), failure)
    recorded = await store.record_report_after_cancel(
        job.job_id, body.attempt, report, callback_token_hash=hash_secret(token)
    )
    log.info(
        "callback of a cancelled job",
        extra=fields(attempt=body.attempt, reported=body.status, recorded=recorded is not None),
    )
    if recorded is None:
        # Not the cancelled job's last attempt (an earlier one is over), or a race.
        return ResultRecorded(recorded=False, detail=_why_unchanged(job, body.attempt))
    return ResultRecorded(
        recorded=True,
        detail=f"report of attempt {body.attempt} kept; it changes nothing: the job is cancelled",
    )


def _join_trace(request: Request, job: Job) -> str:
    """The callback joins its job's trace unless the backend passed a trace id along."""
    if not request.state.trace_supplied:
        request.state.trace_id = job.trace_id or request.state.trace_id
    trace_id: str = request.state.trace_id
    return trace_id


def _failure(body: ResultIn) -> Failure:
    assert body.error is not None  # ResultIn requires it with "failed"
    return Failure(
        kind=FailureKind.REPORTED, message=body.error.message, retryable=body.error.retryable
    )


def _same_report(report: Report, job: Job, body: ResultIn) -> bool:
    if report.status != body.status:
        return False
    if job.status is JobStatus.CANCELLED:
        return True  # a cancelled job keeps no result: the status is all there is to compare
    if body.status == "succeeded":
        return job.result == body.result_text()
    return report.failure == _failure(body)


def _why_unchanged(job: Job, attempt: int) -> str:
    if job.attempt != attempt:
        return (
            f"changes nothing: attempt {attempt} is over, the job is at attempt "
            f"{job.attempt} ({job.status.value})"
        )
    if job.status.finished:
        return f"changes nothing: the job is {job.status.value} already"
    return f"changes nothing: attempt {attempt} is not open (the job is {job.status.value})"
