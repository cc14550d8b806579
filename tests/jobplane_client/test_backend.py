"""The backend helper's checks of a dispatch request (pure)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from aiohttp import web
from jobplane_client.backend import DispatchError, ResultReporter, read_dispatch
from jobplane_client.webhooks import sign

GATEWAY = "https://jobs.example"
SECRET = "whsec_backend"


def dispatch_body(**changes: Any) -> bytes:
    body = {
        "job_id": "j1",
        "app_id": "photos",
        "user_id": "u1",
        "attempt": 2,
        "job_type": "thumbnail",
        "payload": {"width": 10},
        "callback_url": f"{GATEWAY}/v1/jobs/j1/result",
        "callback_token": "tok",
        "deadline": "2030-01-01T00:00:00Z",
        **changes,
    }
    return json.dumps(body).encode()


def test_a_signed_dispatch_to_our_gateway_is_read() -> None:
    body = dispatch_body()
    dispatch = read_dispatch(
        body, {"Jobplane-Signature": sign(SECRET, body)}, secret=SECRET, gateway_url=GATEWAY
    )
    assert (dispatch.job_id, dispatch.attempt, dispatch.payload) == ("j1", 2, {"width": 10})


def test_lower_case_headers_are_found() -> None:
    body = dispatch_body()
    read_dispatch(body, {"jobplane-signature": sign(SECRET, body)}, secret=SECRET)


@pytest.mark.parametrize(
    ("body", "headers", "problem"),
    [
        (dispatch_body(), {}, "not signed"),
        (
            dispatch_body(),
            {"Jobplane-Signature": sign("whsec_other", dispatch_body())},
            "not signed",
        ),
        (dispatch_body(attempt=0), None, "not a dispatch"),
        (dispatch_body(callback_token=""), None, "not a dispatch"),
        (dispatch_body(callback_url="https://evil.example/v1/jobs/j1/result"), None, "callback"),
        (dispatch_body(callback_url=f"{GATEWAY}/v1/jobs/j2/result"), None, "callback"),
    ],
)
def test_a_dispatch_that_is_not_genuine_is_refused(
    body: bytes, headers: dict[str, str] | None, problem: str
) -> None:
    signed = headers if headers is not None else {"Jobplane-Signature": sign(SECRET, body)}
    with pytest.raises(DispatchError, match=problem):
        read_dispatch(body, signed, secret=SECRET, gateway_url=GATEWAY)


def test_the_dispatch_trace_context_is_kept_from_its_headers() -> None:
    traceparent = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    dispatch = read_dispatch(dispatch_body(), {"X-Trace-Id": "ab" * 16, "traceparent": traceparent})
    assert (dispatch.trace_id, dispatch.traceparent) == ("ab" * 16, traceparent)
    assert "traceparent" not in dispatch.model_dump()  # never part of the body


async def test_the_callback_carries_the_dispatch_trace_context_back() -> None:
    seen: list[dict[str, str]] = []

    async def callback(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response({"detail": "recorded"})

    app = web.Application()
    app.router.add_post("/v1/jobs/j1/result", callback)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    gateway = f"http://127.0.0.1:{port}"
    traceparent = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    try:
        body = dispatch_body(callback_url=f"{gateway}/v1/jobs/j1/result")
        dispatch = read_dispatch(body, {"X-Trace-Id": "ab" * 16, "traceparent": traceparent})
        async with httpx.AsyncClient() as http:
            answer = await ResultReporter(http).succeeded(dispatch, {"ok": True})
    finally:
        await runner.cleanup()
    assert answer.status_code == 200
    assert seen[0]["traceparent"] == traceparent
    assert seen[0]["X-Trace-Id"] == "ab" * 16
    assert seen[0]["Authorization"] == "Bearer tok"
