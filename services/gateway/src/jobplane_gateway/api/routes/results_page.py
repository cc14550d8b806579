"""``GET /results/{job_id}?expires=&sig=``: one job's results page, for whoever holds the
link from its e-mail (see ``jobplane.results_links``). No login: the link is the credential,
so the page shows that job only, never its payload, tokens or trace, and is neither cached
nor indexed nor passed on as a referrer. In the user's language (English or Japanese).

A link not signed for this job and expiry → 403; a genuine link past its expiry → 410.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from jobplane.jobs import Job, JobStatus
from jobplane.results_links import RESULTS_PATH, LinkCheck, check_link

from jobplane_gateway.api.deps import SettingsDep, StoreDep
from jobplane_gateway.api.routes.jobs import JobIdPath

router = APIRouter(prefix=RESULTS_PATH, tags=["results page"])

_env = Environment(
    loader=FileSystemLoader(FilePath(__file__).parents[2] / "results_page"),
    autoescape=select_autoescape(enabled_extensions=("html",)),
    undefined=StrictUndefined,
)
# The result shown is cut here; the app has all of it through the status API.
MAX_RESULT_CHARS = 4000

_WORDS: dict[str, dict[str, Any]] = {
    "en": {
        "title": "Job results",
        "job_id": "Job ID",
        "submitted": "Submitted",
        "finished": "Finished",
        "timeline": "Timeline",
        "attempt": "Attempt",
        "started": "Started",
        "ended": "Ended",
        "outcome": "Outcome",
        "no_attempts": "Not started yet.",
        "result": "Result",
        "error": "What went wrong",
        "running": "in progress",
        "succeeded": "succeeded",
        "failed": "failed",
        "footer": "Jobplane · this page shows one job and is reached only by its link.",
        "statuses": {
            "queued": "Waiting",
            "dispatched": "Starting",
            "running": "Running",
            "retry_scheduled": "Will be retried",
            "succeeded": "Succeeded",
            "dead": "Failed",
            "cancelled": "Cancelled",
        },
    },
    "ja": {
        "title": "ジョブの結果",
        "job_id": "ジョブID",
        "submitted": "受付日時",
        "finished": "終了日時",
        "timeline": "経過",
        "attempt": "試行",
        "started": "開始",
        "ended": "終了",
        "outcome": "結果",
        "no_attempts": "まだ開始されていません。",
        "result": "処理結果",
        "error": "エラーの内容",
        "running": "処理中",
        "succeeded": "成功",
        "failed": "失敗",
        "footer": "Jobplane・このページはリンクをお持ちの方だけが見られる、1件のジョブの結果です。",
        "statuses": {
            "queued": "待機中",
            "dispatched": "開始中",
            "running": "処理中",
            "retry_scheduled": "再試行待ち",
            "succeeded": "成功",
            "dead": "失敗",
            "cancelled": "キャンセル",
        },
    },
}
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
}


def _time(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "—"


def _result_text(job: Job) -> str | None:
    if job.result is None:
        return None
    text = json.dumps(json.loads(job.result), indent=2, ensure_ascii=False)
    return text if len(text) <= MAX_RESULT_CHARS else text[:MAX_RESULT_CHARS] + " …"


def _error_text(job: Job) -> str | None:
    if job.status is JobStatus.DEAD and job.last_failure is not None:
        return job.last_failure.message
    return None


def render_page(job: Job, language: str) -> str:
    lang = language if language in _WORDS else "en"
    words = _WORDS[lang]
    rows = []
    for attempt in job.attempts:
        report = attempt.report
        if attempt.failure is not None or (report is not None and report.status == "failed"):
            outcome = words["failed"]
        elif report is not None:
            outcome = words["succeeded"]
        else:
            outcome = words["running"]
        ended = attempt.ended_at or (report.at if report else None)
        rows.append(
            {
                "number": attempt.number,
                "started": _time(attempt.dispatched_at),
                "ended": _time(ended),
                "outcome": outcome,
            }
        )
    css = {JobStatus.SUCCEEDED: "succeeded", JobStatus.DEAD: "dead"}.get(job.status, "waiting")
    return _env.get_template("page.html").render(
        lang=lang,
        t=words,
        job=job,
        status_class=css,
        submitted=_time(job.created_at),
        finished=_time(job.updated_at) if job.status.finished else None,
        attempts=rows,
        result=_result_text(job),
        error=job.last_failure.message
        if job.status is JobStatus.DEAD and job.last_failure
        else None,
    )


@router.get("/{job_id}", response_class=HTMLResponse, include_in_schema=False)
async def results_page(
    job_id: JobIdPath,
    store: StoreDep,
    settings: SettingsDep,
    expires: Annotated[int | None, Query()] = None,
    sig: Annotated[str | None, Query(max_length=100)] = None,
) -> HTMLResponse:
    secret = settings.results_link_secret
    if secret is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no results pages here")
    if expires is None or sig is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="this link is not valid")
    checked = check_link(secret.get_secret_value(), job_id, expires, sig, time.time())
    if checked is LinkCheck.FORGED:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="this link is not valid")
    if checked is LinkCheck.EXPIRED:
        raise HTTPException(status.HTTP_410_GONE, detail="this link has expired")
    job = await store.get_job(job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="this job is no longer kept")
    user = await store.cached_user(job.app_id, job.user_id)
    language = user.language if user is not None else "en"
    return HTMLResponse(
        render_page(job, language), headers={**_HEADERS, "Content-Language": language}
    )
