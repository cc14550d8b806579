"""Paged listings of jobs, shared by the administrators' view (every app) and an app's own
(``GET /v1/jobs``): the filters, the page size and the cursor."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Query, status
from jobplane.events import FailureKind
from jobplane.jobs import JobStatus
from jobplane.store import JobSelection, JobStore
from jobplane.validation import JOB_TYPE_PATTERN

from jobplane_gateway.cursors import job_cursor, parse_job_cursor
from jobplane_gateway.schemas import JobList, JobSummary

MAX_PAGE = 200
DEFAULT_PAGE = 50

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"Page size, 1 to {MAX_PAGE}.")]
Cursor = Annotated[
    str | None,
    Query(max_length=600, description="The `next_cursor` of the previous page (opaque)."),
]


def as_utc(name: str, moment: datetime | None) -> datetime | None:
    """The moment in UTC; ``422`` without a zone, or outside what a date can hold in UTC
    (``0001-01-01T00:00:00+14:00``)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"{name} needs a time zone (for example 2026-01-01T00:00:00Z)",
        )
    try:
        return moment.astimezone(UTC)
    except OverflowError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"{name} is out of range in UTC"
        ) from exc


async def job_filters(
    job_status: Annotated[JobStatus | None, Query(alias="status")] = None,
    job_type: Annotated[str | None, Query(pattern=JOB_TYPE_PATTERN)] = None,
    failure_kind: Annotated[
        FailureKind | None, Query(description="The kind of the job's last failure.")
    ] = None,
    created_from: Annotated[
        datetime | None, Query(description="Jobs created at or after (ISO 8601, with zone).")
    ] = None,
    created_before: Annotated[
        datetime | None, Query(description="Jobs created before (ISO 8601, with zone).")
    ] = None,
) -> JobSelection:
    """The filters of a job listing, every app's (the route narrows it to an app)."""
    return JobSelection(
        status=job_status,
        job_type=job_type,
        failure_kind=failure_kind.value if failure_kind else None,
        created_from=as_utc("created_from", created_from),
        created_before=as_utc("created_before", created_before),
    )


JobFiltersDep = Annotated[JobSelection, Depends(job_filters)]


async def job_page(
    store: JobStore, selection: JobSelection, app_id: str | None, limit: int, cursor: str | None
) -> JobList:
    """One page of the jobs ``selection`` (of ``app_id``, or of every app) picks, newest
    first, after ``cursor``."""
    selection = dataclasses.replace(selection, app_id=app_id)
    after = parse_job_cursor(cursor) if cursor is not None else None
    # One more than asked: whether there is a next page, without an empty last one.
    jobs = await store.list_jobs(selection, after=after, limit=limit + 1)
    page = jobs[:limit]
    next_cursor = job_cursor(page[-1].created_at, page[-1].job_id) if len(jobs) > limit else None
    return JobList(jobs=[JobSummary.of(job) for job in page], next_cursor=next_cursor)
