"""The demo backend served by uvicorn on a free port, and a callback receiver it reports to."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from jobplane_demo.app import create_app
from jobplane_demo.config import DemoSettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


@asynccontextmanager
async def serve_http(app: Any) -> AsyncIterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                await task
                raise RuntimeError("the HTTP server stopped at start-up")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@dataclass(frozen=True)
class Callback:
    job_id: str
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class CallbackReceiver:
    """Plays the gateway's result endpoint: records each callback."""

    url: str = ""
    callbacks: list[Callback] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    fail_next: int = 0  # answer 503 this many times first

    async def _receive(self, request: Request) -> JSONResponse:
        if self.fail_next > 0:
            self.fail_next -= 1
            return JSONResponse({"detail": "try later"}, status_code=503)
        self.callbacks.append(
            Callback(
                job_id=request.path_params["job_id"],
                body=await request.json(),
                headers=dict(request.headers),
            )
        )
        self.arrived.set()
        return JSONResponse({"recorded": True, "detail": "ok"})

    def app(self) -> Starlette:
        return Starlette(
            routes=[Route("/v1/jobs/{job_id}/result", self._receive, methods=["POST"])]
        )

    def callback_url(self, job_id: str) -> str:
        return f"{self.url}/v1/jobs/{job_id}/result"

    async def wait_for(self, job_id: str, attempt: int, timeout: float = 10.0) -> Callback:
        async def arrived() -> Callback:
            while True:
                for callback in self.callbacks:
                    if callback.job_id == job_id and callback.body.get("attempt") == attempt:
                        return callback
                self.arrived.clear()
                await self.arrived.wait()

        return await asyncio.wait_for(arrived(), timeout)


@pytest.fixture
async def receiver() -> AsyncIterator[CallbackReceiver]:
    receiver = CallbackReceiver()
    async with serve_http(receiver.app()) as url:
        receiver.url = url
        yield receiver


@pytest.fixture
def demo_settings(tmp_path: Path) -> DemoSettings:
    return DemoSettings(output_dir=tmp_path / "thumbnails", fail_times=0)


@pytest.fixture
async def demo_url(demo_settings: DemoSettings) -> AsyncIterator[str]:
    async with serve_http(create_app(demo_settings)) as url:
        yield url
