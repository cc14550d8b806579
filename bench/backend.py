"""A fast app backend: answers every dispatch ``202`` and reports success at once.

It is a real HTTP server (uvicorn on a free local port) like an app's backend would be; the
callback goes through one shared HTTP client (a connection pool), as a real worker would do.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class FastBackend:
    """Counts what it was asked and what the gateway answered to its callbacks."""

    url: str = ""
    dispatches: int = 0
    callbacks_recorded: int = 0
    callback_problems: list[str] = field(default_factory=list)
    _client: httpx.AsyncClient | None = None
    _background: set[asyncio.Task[None]] = field(default_factory=set)

    def app(self) -> FastAPI:
        api = FastAPI()

        @api.post("/jobs")
        async def receive(request: Request) -> JSONResponse:
            body: dict[str, Any] = await request.json()
            self.dispatches += 1
            task = asyncio.create_task(self._call_back(body))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return JSONResponse({"accepted": True}, status_code=202)

        return api

    async def _call_back(self, body: dict[str, Any]) -> None:
        assert self._client is not None, "the backend is not serving"
        try:
            response = await self._client.post(
                body["callback_url"],
                json={
                    "attempt": body["attempt"],
                    "status": "succeeded",
                    "result": {"thumbnail": f"{body['job_id']}.png"},
                },
                headers={"Authorization": f"Bearer {body['callback_token']}"},
            )
        except httpx.HTTPError as exc:
            self.callback_problems.append(f"{body['job_id']}: {exc!r}")
            return
        if response.status_code == 200 and response.json().get("recorded"):
            self.callbacks_recorded += 1
        else:
            self.callback_problems.append(
                f"{body['job_id']}: {response.status_code} {response.text[:200]}"
            )

    async def start(self) -> tuple[uvicorn.Server, asyncio.Task[None]]:
        """Serve on a free port; ``self.url`` is where to dispatch."""
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/jobs"
        self._client = httpx.AsyncClient(
            timeout=30, limits=httpx.Limits(max_connections=64, max_keepalive_connections=64)
        )
        server = uvicorn.Server(
            uvicorn.Config(
                self.app(), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
            )
        )
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        return server, task

    async def stop(self, server: uvicorn.Server, task: asyncio.Task[None]) -> None:
        server.should_exit = True
        await task
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
