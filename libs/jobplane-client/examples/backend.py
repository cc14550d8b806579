"""A minimal app backend: checks each dispatch, answers 202, works, reports the result.

    JOBPLANE_URL=http://127.0.0.1:8000 JOBPLANE_WEBHOOK_SECRET=whsec_... \
        uvicorn backend:app --port 8001

Register the app with ``backend_url`` = this server's ``/jobs``. With the app's webhook
secret set, only dispatches signed by Jobplane are accepted.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from jobplane_client import DispatchError, DispatchRequest, ResultReporter, read_dispatch


def work(dispatch: DispatchRequest) -> dict[str, Any]:
    """The job itself: here, the area of the requested image."""
    width, height = dispatch.payload["width"], dispatch.payload["height"]
    return {"pixels": width * height}


def create_app(gateway_url: str | None = None, secret: str | None = None) -> FastAPI:
    tasks: set[asyncio.Task[Any]] = set()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=10) as http:
            app.state.reporter = ResultReporter(http)
            yield

    app = FastAPI(lifespan=lifespan)

    async def run(reporter: ResultReporter, dispatch: DispatchRequest) -> None:
        try:
            result = await asyncio.to_thread(work, dispatch)
        except (KeyError, TypeError) as exc:
            await reporter.failed(dispatch, f"bad payload: {exc!r}", retryable=False)
        else:
            await reporter.succeeded(dispatch, result)

    @app.post("/jobs")
    async def jobs(request: Request) -> JSONResponse:
        try:
            dispatch = read_dispatch(
                await request.body(), request.headers, secret=secret, gateway_url=gateway_url
            )
        except DispatchError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=401)
        task = asyncio.create_task(run(request.app.state.reporter, dispatch))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return JSONResponse({"accepted": True}, status_code=202)

    return app


app = create_app(os.environ.get("JOBPLANE_URL"), os.environ.get("JOBPLANE_WEBHOOK_SECRET"))
