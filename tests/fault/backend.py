"""The app backend of the fault suite, run as its own process (so it can be killed).

    python -m tests.fault.backend --port 8201 --receipts receipts.jsonl

What it does with a dispatched attempt is set by the job's payload:

- ``{"mode": "succeed", "reply": "inline"}``: answers ``200`` with the result at once;
- ``{"mode": "succeed", "reply": "callback"}``: answers ``202``, then posts the result;
- ``{"mode": "flap", "fail_times": n}``: attempts 1..n report a (retryable) failure, later
  attempts succeed;
- ``{"mode": "fail"}``: every attempt reports a failure, so the job ends dead;
- ``{"mode": "hold"}``: answers ``202`` and never reports (the attempt stays open, so
  its callback token can be used by the fuzz test).

Every dispatch it receives is appended to the receipts file as one JSON line (job id,
attempt, time) before it answers, so the checks can compare when a retry arrived with when
it was due, across restarts of this process. A callback the gateway does not take (down,
503) is posted again for a while, as a well-behaved backend would; if this process dies
first, the attempt's deadline takes over.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

CALLBACK_GIVE_UP_SECONDS = 60.0


@dataclass(frozen=True)
class Receipt:
    job_id: str
    attempt: int
    at: datetime
    callback_token: str = ""


def read_receipts(path: Path) -> list[Receipt]:
    """Every dispatch the backend received, in the order it received them."""
    if not path.exists():
        return []
    receipts = []
    for line in path.read_text().splitlines():
        try:
            raw = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill -9
        receipts.append(
            Receipt(
                raw["job_id"],
                raw["attempt"],
                datetime.fromisoformat(raw["at"]),
                raw.get("callback_token", ""),
            )
        )
    return receipts


def outcome_of(payload: dict[str, Any], attempt: int) -> dict[str, Any]:
    """The report the backend gives for `attempt` of a job with `payload`."""
    mode = payload.get("mode", "succeed")
    if mode == "fail" or (mode == "flap" and attempt <= int(payload.get("fail_times", 0))):
        return {"status": "failed", "error": {"message": f"attempt {attempt} broke"}}
    return {"status": "succeeded", "result": {"attempt": attempt}}


def create_app(receipts: Path) -> FastAPI:
    api = FastAPI()
    background: set[asyncio.Task[None]] = set()
    # O_APPEND: one write per line, so lines of concurrent requests never interleave.
    receipts_fd = os.open(receipts, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    client = httpx.AsyncClient(timeout=10)

    @api.post("/jobs")
    async def receive(request: Request) -> JSONResponse:
        body = await request.json()
        line = {
            "job_id": body["job_id"],
            "attempt": body["attempt"],
            "at": _now(),
            "callback_token": body.get("callback_token", ""),
        }
        os.write(receipts_fd, (json.dumps(line) + "\n").encode())
        payload = body.get("payload") or {}
        if isinstance(payload, str):
            payload = json.loads(payload)
        if payload.get("mode") == "hold":
            return JSONResponse({"accepted": True}, status_code=202)
        report = outcome_of(payload, body["attempt"])
        if payload.get("reply") == "inline" and report["status"] == "succeeded":
            return JSONResponse(report, status_code=200)
        task = asyncio.create_task(_call_back(client, body, report))
        background.add(task)
        task.add_done_callback(background.discard)
        return JSONResponse({"accepted": True}, status_code=202)

    return api


async def _call_back(
    client: httpx.AsyncClient, body: dict[str, Any], report: dict[str, Any]
) -> None:
    await asyncio.sleep(0.05)  # answer the dispatch first, like a real worker
    loop = asyncio.get_running_loop()
    give_up = loop.time() + CALLBACK_GIVE_UP_SECONDS
    delay = 0.5
    while True:
        try:
            response = await client.post(
                body["callback_url"],
                json={"attempt": body["attempt"], **report},
                headers={"Authorization": f"Bearer {body['callback_token']}"},
            )
            if response.status_code < 500:
                return  # taken, or refused for good (4xx): posting again changes nothing
        except httpx.HTTPError:
            pass
        if loop.time() + delay > give_up:
            return  # the attempt's deadline reports it instead
        await asyncio.sleep(delay)
        delay = min(delay * 2, 4.0)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--receipts", type=Path, required=True)
    args = parser.parse_args()
    uvicorn.run(create_app(args.receipts), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
