"""Trace ids and JSON logs, on the app without connections (health needs none)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from jobplane.logs import JsonFormatter
from jobplane_gateway.config import Settings
from jobplane_gateway.main import create_app

from .harness import ADMIN, BASE_URL, Gateway


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Reads the JSON lines logged so far during the test."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("gateway"))
    root = logging.getLogger()
    old_level = root.level
    # Jobplane's own DEBUG lines too (an event published, a job accepted: DEBUG, as they are
    # on the hot path), the libraries' from INFO up.
    ours = [logging.getLogger(name) for name in ("jobplane", "jobplane_gateway")]
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for logger in ours:
        logger.setLevel(logging.DEBUG)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        for logger in ours:
            logger.setLevel(logging.NOTSET)


def bare_client() -> httpx.AsyncClient:
    app = create_app(Settings(admin_api_key="k"))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)


async def test_the_trace_id_is_echoed_or_created() -> None:
    async with bare_client() as http:
        given = await http.get("/healthz", headers={"X-Trace-Id": "abc-123"})
        new = await http.get("/healthz")
        hostile = await http.get(
            "/healthz", headers={b"X-Trace-Id": "bad id\xe9\n".encode("latin-1")}
        )
    assert given.headers["x-trace-id"] == "abc-123"
    assert len(new.headers["x-trace-id"]) == 32
    assert len(hostile.headers["x-trace-id"]) == 32


async def test_unknown_routes_are_json_404() -> None:
    async with bare_client() as http:
        response = await http.get("/nope")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


async def test_log_lines_carry_trace_and_job_ids_and_never_secrets(
    gateway: Gateway, log_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    app = await gateway.register_app()
    user_id = await gateway.register_user(app)
    response = await gateway.submit(app, user_id, headers={"X-Trace-Id": "trace-log-1"})
    job_id = response.json()["job_id"]
    token = await gateway.dispatch(job_id, 1)
    await gateway.http.post(
        f"/v1/jobs/{job_id}/result",
        json={"attempt": 1, "status": "succeeded", "result": None},
        headers={"Authorization": f"Bearer {token}"},
    )
    lines = log_lines()
    ours = [line for line in lines if line["logger"].startswith("jobplane")]
    assert ours
    assert all(line.get("trace_id") for line in ours)
    submit_lines = [line for line in ours if line["trace_id"] == "trace-log-1"]
    assert {line["msg"] for line in submit_lines} >= {"job accepted", "published", "request"}
    assert all(line.get("job_id") == job_id for line in submit_lines)
    callback_lines = [line for line in ours if line.get("path") == f"/v1/jobs/{job_id}/result"]
    assert callback_lines
    assert all(line["job_id"] == job_id for line in callback_lines)
    text = "\n".join(json.dumps(line) for line in lines)
    for secret in (app.api_key, app.api_key.partition(".")[2], token, ADMIN["Authorization"]):
        assert secret not in text


async def test_a_w3c_traceparent_gives_its_trace_id_unless_x_trace_id_is_sent() -> None:
    """A caller that traces with OpenTelemetry: its job is in its trace (logs and spans)."""
    w3c = "4bf92f3577b34da6a3ce929d0e0e4736"
    traceparent = f"00-{w3c}-00f067aa0ba902b7-01"
    async with bare_client() as http:
        adopted = await http.get("/healthz", headers={"traceparent": traceparent})
        both = await http.get(
            "/healthz", headers={"traceparent": traceparent, "X-Trace-Id": "abc-123"}
        )
        invalid = await http.get("/healthz", headers={"traceparent": f"00-{'0' * 32}-00-01"})
    assert adopted.headers["x-trace-id"] == w3c
    assert both.headers["x-trace-id"] == "abc-123"
    assert invalid.headers["x-trace-id"] != "0" * 32
