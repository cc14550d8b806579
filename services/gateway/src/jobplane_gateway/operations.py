"""What operators do to jobs: redrive dead jobs, cancel jobs. Shared by the apps' routes
(their own jobs) and the administrators' (any job).

Each change of a job is one guarded write (``JobStore.redrive``, ``JobStore.cancel``); the
redriven job owes its ``job.requested`` in that write (the outbox), and it is published at
once, the relay covering a publish that is not acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import time

from fastapi import HTTPException, status
from fastapi.responses import JSONResponse
from jobplane.jobs import Job, JobStatus
from jobplane.logs import bind, fields
from jobplane.store import JobCursor, JobSelection, JobStore

from jobplane_gateway.api.listing import as_utc
from jobplane_gateway.config import Settings
from jobplane_gateway.publishing import EventBus
from jobplane_gateway.schemas import (
    CancelConflict,
    RedriveRequest,
    RedriveResult,
    SkippedJob,
)

log = logging.getLogger(__name__)

ADMIN = "admin"
# How many dead jobs one store query of a filtered redrive reads.
_PAGE = 200
# A cancel that races with the job's own state changes tries this often.
_CANCEL_TRIES = 3


def by_app(app_id: str) -> str:
    """Who did it, as the job's history records it, for an app."""
    return f"app:{app_id}"


async def redrive(
    store: JobStore,
    bus: EventBus,
    settings: Settings,
    request: RedriveRequest,
    *,
    app_id: str | None,
    by: str,
    idempotency_key: str | None,
) -> RedriveResult:
    """Redrive the dead jobs ``request`` names or picks (of ``app_id`` only, when given),
    at most ``rate_per_second`` a second. With an Idempotency-Key the first answer is kept
    and a repeat gets it again, changing nothing; without one a repeat finds the jobs no
    longer dead and skips them, so a job is redriven once either way."""
    # A dry run changes nothing, so it has nothing to repeat: its key is not kept.
    answer_key = (
        f"{by}:{idempotency_key}" if idempotency_key is not None and not request.dry_run else None
    )
    if answer_key is not None:
        earlier = await store.redrive_answer(answer_key)
        if earlier is not None:
            return RedriveResult.model_validate(earlier)
    dead, skipped = await _pick(store, request, app_id)
    if request.dry_run:
        return RedriveResult(
            dry_run=True,
            matched=len(dead),
            redriven=[job.job_id for job in dead],
            skipped=skipped,
        )
    interval = 1.0 / request.rate_per_second
    takes = (len(dead) - 1) * interval
    if takes > settings.redrive_max_seconds:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=(
                f"{len(dead)} jobs at {request.rate_per_second:g} a second take {takes:.0f} s, "
                f"over the limit of {settings.redrive_max_seconds:g} s (REDRIVE_MAX_SECONDS): "
                "raise rate_per_second or lower limit"
            ),
        )
    redriven: list[str] = []
    next_at = time.monotonic()
    for job in dead:
        delay = next_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        next_at = max(next_at, time.monotonic()) + interval
        again = await store.redrive(job, by=by, announce_grace=settings.announce_grace)
        if again is None:
            skipped.append(
                SkippedJob(
                    job_id=job.job_id, reason="no longer dead: redriven already, or moved on"
                )
            )
            continue
        with bind(trace_id=again.trace_id, job_id=again.job_id):
            acked = await bus.announce(bus.topics.requested, again.requested_event())
            log.info(
                "job redriven",
                extra=fields(
                    by=by, attempt=again.attempt, from_attempt=job.attempt, announced=acked
                ),
            )
        redriven.append(job.job_id)
    result = RedriveResult(dry_run=False, matched=len(dead), redriven=redriven, skipped=skipped)
    if answer_key is not None:
        kept = await store.keep_redrive_answer(answer_key, result.model_dump(mode="json"))
        result = RedriveResult.model_validate(kept)
    return result


async def _pick(
    store: JobStore, request: RedriveRequest, app_id: str | None
) -> tuple[list[Job], list[SkippedJob]]:
    """The dead jobs to redrive, and those named that are not."""
    dead: list[Job] = []
    skipped: list[SkippedJob] = []
    if request.job_ids is not None:
        for job_id in dict.fromkeys(request.job_ids):
            job = (
                await store.get_job(job_id)
                if app_id is None
                else await store.get_job_of_app(app_id, job_id)
            )
            if job is None:
                skipped.append(SkippedJob(job_id=job_id, reason="no such job"))
            elif job.status is not JobStatus.DEAD:
                skipped.append(SkippedJob(job_id=job_id, reason=f"not dead ({job.status.value})"))
            else:
                dead.append(job)
        return dead, skipped
    selection = JobSelection(
        app_id=app_id or request.app_id,
        status=JobStatus.DEAD,
        failure_kind=request.failure_kind.value if request.failure_kind else None,
        created_from=as_utc("since", request.since),
        created_before=as_utc("until", request.until),
    )
    after = None
    while len(dead) < request.limit:
        page = await store.list_jobs(
            selection, after=after, limit=min(_PAGE, request.limit - len(dead))
        )
        dead += page
        if not page:
            break
        after = JobCursor(created_at=page[-1].created_at, job_id=page[-1].job_id)
    return dead, skipped


async def cancel(store: JobStore, job_id: str, *, app_id: str | None, by: str) -> Job:
    """Cancel the job (the app's own, when ``app_id`` is given): ``404`` when there is no
    such job, ``CancelRefusedError`` (a ``409``) when it has finished already."""
    for _ in range(_CANCEL_TRIES):
        job = await store.cancel(job_id, by=by, app_id=app_id)
        if job is not None:
            log.info("job cancelled", extra=fields(job_id=job_id, by=by, attempt=job.attempt))
            return job
        current = (
            await store.get_job(job_id)
            if app_id is None
            else await store.get_job_of_app(app_id, job_id)
        )
        if current is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no job '{job_id}'")
        if current.status.finished:
            raise CancelRefusedError(current)
        # Unfinished, yet the write missed it: it finished between the two; look again.
    raise HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        detail="the job changes too fast to be cancelled now: retry",
        headers={"Retry-After": "1"},
    )


class CancelRefusedError(Exception):
    """The job finished before it could be cancelled."""

    def __init__(self, job: Job) -> None:
        super().__init__(job.job_id)
        self.job = job

    def response(self) -> JSONResponse:
        body = CancelConflict(
            detail=(
                f"job '{self.job.job_id}' is {self.job.status.value} already: "
                "only an unfinished job can be cancelled"
            ),
            status=self.job.status,
        )
        return JSONResponse(body.model_dump(mode="json"), status_code=status.HTTP_409_CONFLICT)
