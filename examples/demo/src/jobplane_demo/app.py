"""The demo app backend: receives Jobplane dispatches, makes thumbnails, reports by callback.

``POST /jobs`` answers 202 at once; the work runs in the background and its outcome goes to
the dispatch's ``callback_url`` with the dispatch's token, as the Jobplane contract says.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from jobplane_demo.config import DemoSettings
from jobplane_demo.thumbnails import BadPayloadError, make_thumbnail

log = logging.getLogger(__name__)

TRACE_HEADER = "X-Trace-Id"


class Dispatch(BaseModel):
    """The body Jobplane's dispatcher posts for each attempt."""

    job_id: str
    app_id: str
    user_id: str
    attempt: int = Field(ge=1)
    job_type: str
    payload: dict[str, Any]
    callback_url: str
    callback_token: str
    deadline: datetime


class Worker:
    """Runs accepted jobs in the background and reports each outcome."""

    def __init__(self, settings: DemoSettings, client: httpx.AsyncClient) -> None:
        self.settings = settings
        self.client = client
        self.tasks: set[asyncio.Task[None]] = set()

    def start(self, dispatch: Dispatch, trace_id: str) -> None:
        task = asyncio.create_task(self.run(dispatch, trace_id))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run(self, dispatch: Dispatch, trace_id: str) -> None:
        report = await self.work(dispatch)
        await self.report(dispatch, trace_id, report)

    async def work(self, dispatch: Dispatch) -> dict[str, Any]:
        payload = dispatch.payload
        fail_times = payload.get("fail_times", self.settings.fail_times)
        if not isinstance(fail_times, int):
            fail_times = self.settings.fail_times
        if payload.get("permanent_failure") is True:
            return _failed(dispatch, f"demo permanent failure on attempt {dispatch.attempt}", False)
        if dispatch.attempt <= fail_times:
            return _failed(dispatch, f"demo failure on attempt {dispatch.attempt}", True)
        output = self.settings.output_dir / f"{dispatch.job_id}-{dispatch.attempt}.png"
        try:
            thumbnail = await asyncio.to_thread(make_thumbnail, payload, output)
        except BadPayloadError as exc:
            return _failed(dispatch, f"bad payload: {exc}", False)
        except Exception as exc:
            log.exception("thumbnail failed")
            return _failed(dispatch, f"thumbnail failed: {exc!r}", True)
        return {"attempt": dispatch.attempt, "status": "succeeded", "result": thumbnail.as_result()}

    async def report(self, dispatch: Dispatch, trace_id: str, body: dict[str, Any]) -> None:
        """POST the outcome to the callback URL; retry while the gateway is unreachable."""
        headers = {"Authorization": f"Bearer {dispatch.callback_token}", TRACE_HEADER: trace_id}
        delay = 0.5
        for attempt in range(1, self.settings.callback_attempts + 1):
            try:
                response = await self.client.post(dispatch.callback_url, json=body, headers=headers)
            except httpx.HTTPError as exc:
                log.warning("callback failed: %r (try %d)", exc, attempt)
            else:
                if response.status_code < 500:
                    log.info(
                        "callback answered %d for job %s attempt %d",
                        response.status_code,
                        dispatch.job_id,
                        dispatch.attempt,
                    )
                    return
                log.warning("callback answered %d (try %d)", response.status_code, attempt)
            await asyncio.sleep(delay)
            delay *= 2
        log.error("gave up reporting job %s attempt %d", dispatch.job_id, dispatch.attempt)

    async def aclose(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def _failed(dispatch: Dispatch, message: str, retryable: bool) -> dict[str, Any]:
    return {
        "attempt": dispatch.attempt,
        "status": "failed",
        "error": {"message": message, "retryable": retryable},
    }


def create_app(settings: DemoSettings | None = None) -> FastAPI:
    settings = settings or DemoSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        timeout = httpx.Timeout(settings.callback_timeout_seconds)
        async with httpx.AsyncClient(timeout=timeout) as client:
            worker = Worker(settings, client)
            app.state.worker = worker
            try:
                yield
            finally:
                await worker.aclose()

    app = FastAPI(title="Jobplane demo backend (thumbnails)", lifespan=lifespan)

    @app.post("/jobs", status_code=202)
    async def accept_job(dispatch: Dispatch, request: Request) -> JSONResponse:
        trace_id = request.headers.get(TRACE_HEADER, "")
        log.info("accepted job %s attempt %d", dispatch.job_id, dispatch.attempt)
        request.app.state.worker.start(dispatch, trace_id)
        return JSONResponse(
            {"accepted": True, "job_id": dispatch.job_id, "attempt": dispatch.attempt},
            status_code=202,
            headers={TRACE_HEADER: trace_id} if trace_id else None,
        )

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
