"""A real HTTP app backend on a free local port, whose answers each test chooses."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jobplane.events import utc_now
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support import serve_http

Responder = Callable[[dict[str, Any]], Awaitable[Response]]


async def accept(_: dict[str, Any]) -> Response:
    return JSONResponse({"accepted": True}, status_code=202)


@dataclass(frozen=True)
class Call:
    body: dict[str, Any]
    headers: dict[str, str]
    received_at: datetime


@dataclass
class StubBackend:
    """Records every call; ``respond`` decides each answer."""

    url: str = ""
    respond: Responder = accept
    calls: list[Call] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    max_in_flight_by_app: dict[str, int] = field(default_factory=dict)
    _by_app: dict[str, int] = field(default_factory=dict)

    def calls_for(self, job_id: str) -> list[Call]:
        return [c for c in self.calls if c.body.get("job_id") == job_id]

    async def _handle(self, request: Request) -> Response:
        body = await request.json()
        self.calls.append(Call(body=body, headers=dict(request.headers), received_at=utc_now()))
        app_id = str(body.get("app_id"))
        self.in_flight += 1
        self._by_app[app_id] = self._by_app.get(app_id, 0) + 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.max_in_flight_by_app[app_id] = max(
            self.max_in_flight_by_app.get(app_id, 0), self._by_app[app_id]
        )
        try:
            return await self.respond(body)
        finally:
            self.in_flight -= 1
            self._by_app[app_id] -= 1

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/jobs", self._handle, methods=["POST"])])


def bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@asynccontextmanager
async def stub_backend(respond: Responder = accept) -> AsyncIterator[StubBackend]:
    stub = StubBackend(respond=respond)
    async with serve_http(stub.app()) as base_url:
        stub.url = f"{base_url}/jobs"
        yield stub


@asynccontextmanager
async def refusing_url() -> AsyncIterator[str]:
    """A URL on a port that is bound but not listening: connections are refused."""
    sock = bound_socket()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/jobs"
    finally:
        sock.close()
