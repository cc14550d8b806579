"""The app backend both systems call: a separate process, a plain ASGI app under uvicorn.

    python -m bench.backend --port 8301

`POST /jobs` with `{"job_id", "attempt", ...}` answers `200 {"status": "succeeded", "result"}`
at once (mode "result"), or `202` and then posts the result to the job's `callback_url` with
its `callback_token` (mode "callback", Jobplane only: Celery has no callback). A configurable
share of calls fails with `500` (retryable), and an accept delay makes a slow backend.
Every call is recorded: job id, attempt, receive time and, when the caller sends one, the
time the attempt was due (`due_at`, epoch seconds). `POST /config` sets the behaviour,
`GET /calls` returns the records, `POST /reset` forgets them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass
class BackendConfig:
    mode: str = "result"  # "result": 200 with the result; "callback": 202, then the callback
    fail_rate: float = 0.0
    accept_delay: float = 0.0


@dataclass
class Backend:
    config: BackendConfig = field(default_factory=BackendConfig)
    calls: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    callback_errors: int = 0
    _client: httpx.AsyncClient | None = None
    _background: set[asyncio.Task[None]] = field(default_factory=set)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        route = (scope["method"], scope["path"])
        if route == ("POST", "/jobs"):
            status, answer = await self.job(json.loads(body))
        elif route == ("GET", "/calls"):
            status, answer = 200, self.report()
        elif route == ("POST", "/reset"):
            self.calls.clear()
            self.max_in_flight = self.in_flight
            self.callback_errors = 0
            status, answer = 200, {}
        elif route == ("POST", "/config"):
            self.config = BackendConfig(**json.loads(body))
            status, answer = 200, asdict(self.config)
        else:
            status, answer = 404, {"error": "not found"}
        data = json.dumps(answer).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": data})

    def report(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "max_in_flight": self.max_in_flight,
            "callback_errors": self.callback_errors,
        }

    async def job(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        received = time.time()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self.calls.append(
                {
                    "job_id": request["job_id"],
                    "attempt": request["attempt"],
                    "at": received,
                    "due_at": request.get("due_at"),
                }
            )
            if self.config.accept_delay:
                await asyncio.sleep(self.config.accept_delay)
            if random.random() < self.config.fail_rate:
                return 500, {"error": "injected failure"}
            result = {"thumbnail": f"{request['job_id']}.png", "width": 160, "height": 120}
            if self.config.mode == "callback":
                task = asyncio.create_task(self.call_back(request, result))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
                return 202, {"accepted": True}
            return 200, {"status": "succeeded", "result": result}
        finally:
            self.in_flight -= 1

    async def call_back(self, request: dict[str, Any], result: dict[str, Any]) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64))
        try:
            response = await self._client.post(
                request["callback_url"],
                json={"attempt": request["attempt"], "status": "succeeded", "result": result},
                headers={"Authorization": f"Bearer {request['callback_token']}"},
            )
            if response.status_code != 200:
                self.callback_errors += 1
        except httpx.HTTPError:
            self.callback_errors += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        Backend(), host=args.host, port=args.port, log_level="warning", access_log=False,
        lifespan="off", backlog=1024,
    )  # fmt: skip


if __name__ == "__main__":
    main()
