"""The demo backend served by uvicorn on a free port, and a callback receiver it reports to."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from jobplane_demo.app import create_app
from jobplane_demo.config import DemoSettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support import serve_http


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
