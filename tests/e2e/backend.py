"""A real app backend for the end-to-end tests, served over HTTP on a free local port.

What it does with a dispatched job is chosen by the job's payload, so one backend serves
every scenario: ``{"behaviour": "succeed"}``, ``"fail"`` (always reports a failure),
``"fail_times": n`` then succeed, ``"permanent"`` (non-retryable failure), ``"http_500"``,
``"silent"`` (accepts, never calls back); ``"silent_times": n`` is silent for the first n
attempts; ``"delay": seconds`` waits that long before calling back. Its callback sends back
the ``traceparent`` and ``X-Trace-Id`` of the dispatch, as the backend guide asks, so the
callback joins the trace.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

# What the dispatch carries of its trace, sent back with the callback.
_TRACE_HEADERS = ("traceparent", "x-trace-id")


@dataclass(frozen=True)
class Call:
    job_id: str
    attempt: int
    received_at: datetime
    body: dict[str, Any]
    trace_id: str | None
    traceparent: str | None = None


@dataclass
class TestBackend:
    __test__ = False  # not a test class, whatever its name
    calls: list[Call] = field(default_factory=list)
    callback_responses: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def calls_for(self, job_id: str) -> list[Call]:
        return [c for c in self.calls if c.job_id == job_id]

    def app(self) -> FastAPI:
        api = FastAPI()
        background: set[asyncio.Task[None]] = set()

        @api.post("/jobs")
        async def receive(request: Request) -> JSONResponse:
            body = await request.json()
            self.calls.append(
                Call(
                    job_id=body["job_id"],
                    attempt=body["attempt"],
                    received_at=datetime.now(UTC),
                    body=body,
                    trace_id=request.headers.get("x-trace-id"),
                    traceparent=request.headers.get("traceparent"),
                )
            )
            payload = body["payload"]
            behaviour = payload.get("behaviour", "succeed")
            if behaviour == "http_500":
                return JSONResponse({"error": "backend is broken"}, status_code=500)
            silent = behaviour == "silent" or body["attempt"] <= payload.get("silent_times", 0)
            if not silent:
                trace = {k: v for k, v in request.headers.items() if k in _TRACE_HEADERS}
                task = asyncio.create_task(self._call_back(body, payload, trace))
                background.add(task)
                task.add_done_callback(background.discard)
            return JSONResponse({"accepted": True}, status_code=202)

        return api

    async def _call_back(
        self, body: dict[str, Any], payload: dict[str, Any], trace: dict[str, str]
    ) -> None:
        # Answer the dispatch first, like a real worker would (or work a while).
        await asyncio.sleep(payload.get("delay", 0.05))
        attempt = body["attempt"]
        behaviour = payload.get("behaviour", "succeed")
        report: dict[str, Any]
        if behaviour == "fail" or attempt <= payload.get("fail_times", 0):
            report = {"status": "failed", "error": {"message": f"attempt {attempt} broke"}}
        elif behaviour == "permanent":
            report = {
                "status": "failed",
                "error": {"message": "the video is corrupt", "retryable": False},
            }
        else:
            report = {"status": "succeeded", "result": {"thumbnail": f"{body['job_id']}.png"}}
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.post(
                body["callback_url"],
                json={"attempt": attempt, **report},
                headers={"Authorization": f"Bearer {body['callback_token']}", **trace},
            )
        self.callback_responses.append({"status": response.status_code, **response.json()})


async def serve_in_background(app: FastAPI, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    return server, task
