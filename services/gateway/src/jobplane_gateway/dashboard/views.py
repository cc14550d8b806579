"""The dashboard's pages and the fragments htmx polls or swaps in.

Every read goes through the admin API's functions (`jobplane_gateway.api.routes.admin`,
`jobplane_gateway.api.listing`), every action through the functions its redrive and cancel
routes call (`jobplane_gateway.operations`): a click does exactly what the API does.
"""

from __future__ import annotations

from datetime import datetime
from importlib.resources import files
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jobplane.events import FailureKind
from jobplane.jobs import JobStatus
from jobplane.store import JobSelection
from jobplane.validation import APP_ID_PATTERN, JOB_ID_PATTERN
from pydantic import ValidationError

from jobplane_gateway import operations
from jobplane_gateway.api.deps import BusDep, SettingsDep, StoreDep
from jobplane_gateway.api.listing import DEFAULT_PAGE, Cursor, job_page
from jobplane_gateway.api.routes import admin
from jobplane_gateway.dashboard.session import COOKIE_NAME, new_session, session_valid
from jobplane_gateway.schemas import AppUpdate, RedriveRequest, RedriveResult
from jobplane_gateway.security import is_admin_key

PREFIX = "/dashboard"
LOGIN_PATH = f"{PREFIX}/login"
# How often the live parts of a page ask for fresh content (htmx polling).
POLL_SECONDS = 2
# A login form is tiny; refuse anything bigger before parsing it.
MAX_FORM_BYTES = 4096

templates = Jinja2Templates(directory=str(files("jobplane_gateway.dashboard") / "templates"))
templates.env.globals.update(
    prefix=PREFIX, poll_seconds=POLL_SECONDS, statuses=list(JobStatus), kinds=list(FailureKind)
)


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"


templates.env.filters["when"] = _when

router = APIRouter(prefix=PREFIX, include_in_schema=False)


class LoginRequired(HTTPException):
    """Neither the admin key nor a valid session: to the login page (htmx follows
    ``HX-Redirect``; a plain browser the ``Location``)."""

    def __init__(self) -> None:
        super().__init__(
            status.HTTP_303_SEE_OTHER,
            detail="log in with the admin key",
            headers={"Location": LOGIN_PATH, "HX-Redirect": LOGIN_PATH},
        )


async def require_operator(request: Request, settings: SettingsDep) -> None:
    """The admin key as a bearer token, or the session cookie the login page gave for it."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and is_admin_key(token, settings.admin_api_key):
        return
    cookie = request.cookies.get(COOKIE_NAME)
    if session_valid(cookie, settings.admin_api_key, settings.dashboard_session_seconds):
        return
    raise LoginRequired


OperatorDep = Annotated[None, Depends(require_operator)]
JobIdPath = Annotated[str, Path(pattern=JOB_ID_PATTERN)]
AppIdPath = Annotated[str, Path(pattern=APP_ID_PATTERN)]


def _page(request: Request, template: str, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, template, context)


def _is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


async def _form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body's fields (the first of each name)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail="form too large")
    fields = parse_qs(body.decode(errors="replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


# -- login ---------------------------------------------------------------------------------


@router.get("/login")
async def login_page(request: Request) -> HTMLResponse:
    return _page(request, "login.html", error=None)


@router.post("/login")
async def login(request: Request, settings: SettingsDep) -> Response:
    key = (await _form(request)).get("admin_key", "")
    if not key or not is_admin_key(key, settings.admin_api_key):
        refused = _page(request, "login.html", error="That is not the admin key.")
        refused.status_code = status.HTTP_401_UNAUTHORIZED
        return refused
    response = RedirectResponse(PREFIX, status_code=status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        COOKIE_NAME,
        new_session(settings.admin_api_key),
        max_age=settings.dashboard_session_seconds,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=settings.public_url.startswith("https://"),
    )
    return response


@router.post("/logout")
async def logout() -> Response:
    response = RedirectResponse(LOGIN_PATH, status_code=status.HTTP_303_SEE_OTHER)
    response.delete_cookie(COOKIE_NAME, path=PREFIX)
    return response


# -- overview: counts by status and app ----------------------------------------------------


@router.get("")
async def overview(request: Request, store: StoreDep, _op: OperatorDep) -> HTMLResponse:
    return _page(request, "overview.html", stats=await admin.stats(store, None))


@router.get("/parts/counts")
async def counts(request: Request, store: StoreDep, _op: OperatorDep) -> HTMLResponse:
    return _page(request, "_counts.html", stats=await admin.stats(store, None))


# -- jobs and dead letters -----------------------------------------------------------------


async def _jobs_context(
    store: StoreDep,
    job_status: JobStatus | None,
    app_id: str | None,
    failure_kind: FailureKind | None,
    cursor: str | None,
) -> dict[str, Any]:
    selection = JobSelection(
        status=job_status, failure_kind=failure_kind.value if failure_kind else None
    )
    page = await job_page(store, selection, app_id, DEFAULT_PAGE, cursor)
    query = {
        name: value
        for name, value in (
            ("status", job_status.value if job_status else ""),
            ("app_id", app_id or ""),
            ("failure_kind", failure_kind.value if failure_kind else ""),
        )
        if value
    }
    return {
        "page": page,
        "status": job_status,
        "app_id": app_id,
        "failure_kind": failure_kind,
        "cursor": cursor,
        "query": urlencode(query),
        "next_query": urlencode({**query, "cursor": page.next_cursor})
        if page.next_cursor
        else None,
    }


def _blank_is_none(value: str | None) -> str | None:
    return value or None


async def _filters(
    job_status: Annotated[str | None, Query(alias="status")] = None,
    app_id: Annotated[str | None, Query(max_length=64)] = None,
    failure_kind: Annotated[str | None, Query(max_length=32)] = None,
) -> tuple[JobStatus | None, str | None, FailureKind | None]:
    """The filter form's fields; a blank one (the form's "any") filters nothing. An app id
    no app can have simply matches no job."""
    try:
        return (
            JobStatus(job_status) if job_status else None,
            app_id or None,
            FailureKind(failure_kind) if failure_kind else None,
        )
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from None


FiltersDep = Annotated[tuple[JobStatus | None, str | None, FailureKind | None], Depends(_filters)]


@router.get("/jobs")
async def jobs(
    request: Request,
    store: StoreDep,
    _op: OperatorDep,
    filters: FiltersDep,
    cursor: Cursor = None,
) -> HTMLResponse:
    context = await _jobs_context(store, *filters, cursor)
    return _page(request, "jobs.html", dead_view=False, **context)


@router.get("/dead")
async def dead_letters(
    request: Request,
    store: StoreDep,
    _op: OperatorDep,
    filters: FiltersDep,
    cursor: Cursor = None,
) -> HTMLResponse:
    _, app_id, failure_kind = filters
    context = await _jobs_context(store, JobStatus.DEAD, app_id, failure_kind, cursor)
    return _page(request, "jobs.html", dead_view=True, **context)


@router.get("/parts/jobs")
async def jobs_table(
    request: Request,
    store: StoreDep,
    _op: OperatorDep,
    filters: FiltersDep,
    cursor: Cursor = None,
    dead_view: bool = False,
) -> HTMLResponse:
    context = await _jobs_context(store, *filters, cursor)
    return _page(request, "_jobs_table.html", dead_view=dead_view, **context)


# -- one job ---------------------------------------------------------------------------------


@router.get("/jobs/{job_id}")
async def job(
    request: Request, job_id: JobIdPath, store: StoreDep, _op: OperatorDep
) -> HTMLResponse:
    found = await admin.get_any_job(job_id, store, None)
    return _page(request, "job.html", job=found, message=None)


@router.get("/parts/jobs/{job_id}")
async def job_timeline(
    request: Request, job_id: JobIdPath, store: StoreDep, _op: OperatorDep
) -> HTMLResponse:
    found = await admin.get_any_job(job_id, store, None)
    return _page(request, "_job.html", job=found, message=None)


async def _redrive(
    store: StoreDep, bus: BusDep, settings: SettingsDep, **request: Any
) -> RedriveResult | str:
    """The admin API's redrive; a refused request is the reason, as a sentence."""
    try:
        body = RedriveRequest(**request)
    except ValidationError as exc:
        return "; ".join(str(e["msg"]) for e in exc.errors())
    return await operations.redrive(
        store, bus, settings, body, app_id=None, by=operations.ADMIN, idempotency_key=None
    )


@router.post("/jobs/{job_id}/redrive")
async def redrive_job(
    request: Request,
    job_id: JobIdPath,
    store: StoreDep,
    bus: BusDep,
    settings: SettingsDep,
    _op: OperatorDep,
) -> HTMLResponse:
    result = await _redrive(store, bus, settings, job_ids=[job_id])
    if isinstance(result, str):
        message = f"Redrive refused: {result}"
    elif job_id in result.redriven:
        message = "Redriven: the job is queued again."
    else:
        reasons = "; ".join(s.reason for s in result.skipped) or "no longer dead"
        message = f"Not redriven: {reasons}."
    return await _after_action(request, store, job_id, message)


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(
    request: Request, job_id: JobIdPath, store: StoreDep, _op: OperatorDep
) -> HTMLResponse:
    try:
        await operations.cancel(store, job_id, app_id=None, by=operations.ADMIN)
        message = "Cancelled: the job will not run again."
    except operations.CancelRefusedError as exc:
        message = f"Not cancelled: the job is {exc.job.status.value} already."
    return await _after_action(request, store, job_id, message)


async def _after_action(
    request: Request, store: StoreDep, job_id: str, message: str
) -> HTMLResponse:
    """The job's panel with the action's outcome: swapped in by htmx, or a whole page."""
    found = await admin.get_any_job(job_id, store, None)
    template = "_job.html" if _is_htmx(request) else "job.html"
    return _page(request, template, job=found, message=message)


@router.post("/dead/redrive")
async def redrive_dead(
    request: Request, store: StoreDep, bus: BusDep, settings: SettingsDep, _op: OperatorDep
) -> HTMLResponse:
    """Redrive the dead letters of a filter (app, failure kind), or list them (dry run)."""
    form = await _form(request)
    dry_run = form.get("dry_run") == "true"
    result = await _redrive(
        store,
        bus,
        settings,
        app_id=_blank_is_none(form.get("app_id")),
        failure_kind=_blank_is_none(form.get("failure_kind")),
        dry_run=dry_run,
    )
    return _page(request, "_redrive_result.html", result=result, dry_run=dry_run)


# -- apps --------------------------------------------------------------------------------------


@router.get("/apps")
async def apps(
    request: Request, store: StoreDep, _op: OperatorDep, cursor: Cursor = None
) -> HTMLResponse:
    listing = await admin.list_apps(store, None, DEFAULT_PAGE, cursor)
    return _page(request, "apps.html", apps=listing)


@router.post("/apps/{app_id}/disabled")
async def set_disabled(
    request: Request, app_id: AppIdPath, store: StoreDep, _op: OperatorDep
) -> HTMLResponse:
    """Disable an app (its new jobs refused, its queued jobs held) or enable it again, by
    the admin API's own update."""
    disabled = (await _form(request)).get("disabled") == "true"
    changed = await admin.update_app(app_id, AppUpdate(disabled=disabled), store, None)
    return _page(request, "_app_row.html", app=changed)
