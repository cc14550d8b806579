"""The demo app backend: receives Jobplane dispatches, makes thumbnails, reports by callback.

Built on ``jobplane_client``: ``read_dispatch`` checks each dispatch (its signature when the
demo knows the app's webhook secret, its callback URL when it knows the platform's URL) and
``ResultReporter`` hands the outcome to the callback URL with the dispatch's token. ``POST
/jobs`` answers 202 at once; the work runs in the background.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from jobplane_client.backend import (
    TRACE_HEADER,
    DispatchError,
    DispatchRequest,
    ReportError,
    ResultReporter,
    read_dispatch,
)

from jobplane_demo.config import DemoSettings
from jobplane_demo.thumbnails import BadPayloadError, make_thumbnail

log = logging.getLogger(__name__)


class Worker:
    """Runs accepted jobs in the background and reports each outcome."""

    def __init__(self, settings: DemoSettings, reporter: ResultReporter) -> None:
        self.settings = settings
        self.reporter = reporter
        self.tasks: set[asyncio.Task[None]] = set()

    def start(self, dispatch: DispatchRequest, trace_id: str) -> None:
        task = asyncio.create_task(self.run(dispatch, trace_id))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run(self, dispatch: DispatchRequest, trace_id: str) -> None:
        try:
            await self.work(dispatch, trace_id)
        except ReportError as exc:
            # The attempt times out on the platform's side and is retried.
            log.error("gave up reporting: %s", exc)

    async def work(self, dispatch: DispatchRequest, trace_id: str) -> None:
        payload = dispatch.payload
        fail_times = payload.get("fail_times", self.settings.fail_times)
        if not isinstance(fail_times, int):
            fail_times = self.settings.fail_times
        if payload.get("permanent_failure") is True:
            message = f"demo permanent failure on attempt {dispatch.attempt}"
            await self.reporter.failed(dispatch, message, retryable=False, trace_id=trace_id)
            return
        if dispatch.attempt <= fail_times:
            message = f"demo failure on attempt {dispatch.attempt}"
            await self.reporter.failed(dispatch, message, trace_id=trace_id)
            return
        output = self.settings.output_dir / f"{dispatch.job_id}-{dispatch.attempt}.png"
        try:
            thumbnail = await asyncio.to_thread(make_thumbnail, payload, output)
        except BadPayloadError as exc:
            await self.reporter.failed(
                dispatch, f"bad payload: {exc}", retryable=False, trace_id=trace_id
            )
            return
        except Exception as exc:
            log.exception("thumbnail failed")
            await self.reporter.failed(dispatch, f"thumbnail failed: {exc!r}", trace_id=trace_id)
            return
        answer = await self.reporter.succeeded(dispatch, thumbnail.as_result(), trace_id=trace_id)
        log.info("job %s attempt %d reported: %s", dispatch.job_id, dispatch.attempt, answer.detail)

    async def aclose(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def create_app(settings: DemoSettings | None = None) -> FastAPI:
    settings = settings or DemoSettings()
    secret = settings.dispatch_secret.get_secret_value() if settings.dispatch_secret else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        timeout = httpx.Timeout(settings.callback_timeout_seconds)
        async with httpx.AsyncClient(timeout=timeout) as client:
            reporter = ResultReporter(client, tries=settings.callback_attempts)
            worker = Worker(settings, reporter)
            app.state.worker = worker
            try:
                yield
            finally:
                await worker.aclose()

    app = FastAPI(title="Jobplane demo backend (thumbnails)", lifespan=lifespan)

    @app.post("/jobs", status_code=202)
    async def accept_job(request: Request) -> JSONResponse:
        try:
            dispatch = read_dispatch(
                await request.body(),
                request.headers,
                secret=secret,
                gateway_url=settings.gateway_url,
            )
        except DispatchError as exc:
            log.warning("dispatch refused: %s", exc)
            return JSONResponse({"detail": str(exc)}, status_code=422)
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
