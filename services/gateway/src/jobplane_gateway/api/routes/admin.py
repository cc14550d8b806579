"""The administrators' API: every app's jobs, the apps and their users, counts for a
dashboard. All of it needs the admin API key."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status
from fastapi.responses import JSONResponse
from jobplane.jobs import JobStatus
from jobplane.logs import fields
from jobplane.store import APP_CACHE_TTL_SECONDS, utcnow
from jobplane.validation import APP_ID_PATTERN, JOB_ID_PATTERN

from jobplane_gateway import operations
from jobplane_gateway.api.deps import JSON_BODY, AdminDep, StoreDep
from jobplane_gateway.api.listing import (
    DEFAULT_PAGE,
    MAX_PAGE,
    Cursor,
    JobFiltersDep,
    Limit,
    job_page,
)
from jobplane_gateway.api.responses import ADMIN_ERRORS, BODY_ERRORS, cancel_errors, errors
from jobplane_gateway.api.routes.jobs import CANCEL_DOC
from jobplane_gateway.cursors import (
    id_cursor,
    parse_id_cursor,
)
from jobplane_gateway.schemas import (
    AdminJobOut,
    AppList,
    AppOut,
    AppUpdate,
    AppUpdated,
    JobList,
    Stats,
    UserList,
    UserOut,
)
from jobplane_gateway.security import new_webhook_secret

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/admin", tags=["admin"], responses=errors(*ADMIN_ERRORS))

AppIdPath = Annotated[str, Path(pattern=APP_ID_PATTERN)]
# How long the secret a rotation replaced still signs (next to the new one).
WEBHOOK_ROTATION_OVERLAP = timedelta(hours=24)
WEBHOOK_FIELDS = (
    "webhook_url",
    "webhook_secret",
    "webhook_secret_previous",
    "webhook_previous_until",
)


@router.get("/jobs", responses=errors(422))
async def list_jobs(
    store: StoreDep,
    _admin: AdminDep,
    filters: JobFiltersDep,
    app_id: Annotated[str | None, Query(pattern=APP_ID_PATTERN)] = None,
    limit: Limit = DEFAULT_PAGE,
    cursor: Cursor = None,
) -> JobList:
    """Jobs of every app, newest first (by creation time), filtered by every parameter
    given. Page on with ``next_cursor`` until it is null."""
    return await job_page(store, filters, app_id, limit, cursor)


@router.get("/jobs/{job_id}", responses=errors(404, 422))
async def get_any_job(
    job_id: Annotated[str, Path(pattern=JOB_ID_PATTERN)], store: StoreDep, _admin: AdminDep
) -> AdminJobOut:
    """Any app's job with its whole timeline: every attempt with its times, error and
    report, the result, the payload, the mails to the user and the alerts to the
    administrators, the event it still owes."""
    job = await store.get_job(job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no job '{job_id}'")
    return AdminJobOut.of_admin(job, await store.notifications_of(job_id))


@router.post(
    "/jobs/{job_id}/cancel",
    responses=cancel_errors(404, 422),
    response_model=AdminJobOut,
    description="Cancel any app's job: `200` with its timeline (`status`: `cancelled`)."
    + CANCEL_DOC,
)
async def cancel_any_job(
    job_id: Annotated[str, Path(pattern=JOB_ID_PATTERN)], store: StoreDep, _admin: AdminDep
) -> AdminJobOut | JSONResponse:
    """Cancel any app's job: `200` with its timeline (`status`: `cancelled`)."""
    try:
        job = await operations.cancel(store, job_id, app_id=None, by=operations.ADMIN)
    except operations.CancelRefusedError as exc:
        return exc.response()
    return AdminJobOut.of_admin(job, await store.notifications_of(job_id))


@router.get("/apps", responses=errors(422))
async def list_apps(
    store: StoreDep, _admin: AdminDep, limit: Limit = DEFAULT_PAGE, cursor: Cursor = None
) -> AppList:
    """The registered apps in the order of their ids (never their keys)."""
    after = parse_id_cursor(cursor) if cursor is not None else None
    apps = await store.list_apps(after=after, limit=limit + 1)
    page = apps[:limit]
    return AppList(
        apps=[AppOut.of(app) for app in page],
        next_cursor=id_cursor(page[-1].app_id) if len(apps) > limit else None,
    )


@router.get("/apps/{app_id}/users", responses=errors(404, 422))
async def list_users(
    app_id: AppIdPath,
    store: StoreDep,
    _admin: AdminDep,
    limit: Limit = DEFAULT_PAGE,
    cursor: Cursor = None,
) -> UserList:
    """An app's registered users in the order of their ids."""
    if await store.get_app(app_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no app '{app_id}'")
    after = parse_id_cursor(cursor) if cursor is not None else None
    users = await store.list_users(app_id, after=after, limit=limit + 1)
    page = users[:limit]
    return UserList(
        users=[UserOut(user_id=u.user_id, email=u.email, language=u.language) for u in page],
        next_cursor=id_cursor(page[-1].user_id) if len(users) > limit else None,
    )


@router.patch("/apps/{app_id}", responses=errors(404, *BODY_ERRORS), dependencies=[JSON_BODY])
async def update_app(
    app_id: AppIdPath, body: AppUpdate, store: StoreDep, _admin: AdminDep
) -> AppUpdated:
    """Change an app's backend URL, default timeout, contacts or concurrency, or disable
    it (``"disabled": true``): a disabled app's new jobs are refused with ``403``; its
    queued jobs (and retries that fall due) are held by the dispatcher, neither dispatched
    nor lost, and jobs already running finish. Enable it again with ``"disabled": false``:
    its held jobs are requested again within about 10 seconds.

    ``webhook_url`` sets where the app's job outcomes are POSTed (``null`` removes it); a
    first URL, or ``"rotate_webhook_secret": true``, makes a new webhook secret, which is in
    this answer only."""
    changes = body.changes()
    unset: tuple[str, ...] = ()
    secret: str | None = None
    if "webhook_url" in body.model_fields_set:
        if body.webhook_url is None:
            unset = WEBHOOK_FIELDS
        else:
            changes["webhook_url"] = str(body.webhook_url)
    if body.rotate_webhook_secret or (body.webhook_url is not None and not unset):
        current = await store.get_app(app_id)
        if current is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no app '{app_id}'")
        if body.rotate_webhook_secret or current.webhook_secret is None:
            secret = new_webhook_secret()
            changes["webhook_secret"] = secret
            if current.webhook_secret is not None:
                # Signed with both for a while: the app switches its receiver meanwhile.
                changes["webhook_secret_previous"] = current.webhook_secret
                changes["webhook_previous_until"] = utcnow() + WEBHOOK_ROTATION_OVERLAP
    app = await store.update_app(app_id, changes, unset=unset)
    if app is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no app '{app_id}'")
    if body.disabled is False:
        # Every service's cached copy of the app is out of date within the cache's life:
        # the held jobs are requested again once no dispatcher can still see it disabled.
        released = await store.release_held(
            app_id, due_at=utcnow() + timedelta(seconds=APP_CACHE_TTL_SECONDS + 1)
        )
        if released:
            log.info("held jobs released", extra=fields(app_id=app_id, released=released))
    log.info("app updated", extra=fields(app_id=app_id, changed=sorted(body.model_fields_set)))
    return AppUpdated(**AppOut.of(app).model_dump(), webhook_secret=secret)


@router.get("/stats")
async def stats(store: StoreDep, _admin: AdminDep) -> Stats:
    """How many jobs are in each status, in all and per app (counted through indexes)."""
    by_status = dict(
        zip(JobStatus, await asyncio.gather(*(store.count_jobs(s) for s in JobStatus)), strict=True)
    )
    by_app: dict[str, dict[JobStatus, int]] = {}
    after: str | None = None
    while apps := await store.list_apps(after=after, limit=MAX_PAGE):
        for app in apps:
            counts = await asyncio.gather(*(store.count_jobs(s, app.app_id) for s in JobStatus))
            by_app[app.app_id] = dict(zip(JobStatus, counts, strict=True))
        after = apps[-1].app_id
    return Stats(total=sum(by_status.values()), by_status=by_status, by_app=by_app)
