"""Outcome classification of the backend call."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from jobplane.events import FailureKind
from jobplane_dispatcher.backend import (
    Accepted,
    BackendClient,
    CompletedAtOnce,
    Failed,
    classify_response,
)
from jobplane_dispatcher.config import Settings
from starlette.responses import JSONResponse, PlainTextResponse, Response

from .http_stub import refusing_url, stub_backend


def response(status: int, body: Any = None, text: str | None = None) -> tuple[int, bytes]:
    if text is not None:
        return status, text.encode()
    if body is None:
        return status, b""
    return status, json.dumps(body).encode()


# -- pure classification of an HTTP answer ---------------------------------------------


@pytest.mark.parametrize("status", [202, 200, 201, 204])
def test_2xx_without_a_result_is_accepted(status: int) -> None:
    assert classify_response(*response(status)) == Accepted(status)


def test_2xx_with_a_non_json_body_is_accepted() -> None:
    assert classify_response(*response(200, text="OK, working on it")) == Accepted(200)


def test_2xx_with_other_json_is_accepted() -> None:
    assert classify_response(*response(200, {"accepted": True})) == Accepted(200)
    assert classify_response(*response(200, [1, 2])) == Accepted(200)


def test_202_is_accepted_whatever_its_body() -> None:
    assert classify_response(*response(202, {"status": "succeeded"})) == Accepted(202)


def test_200_with_a_result_is_completed_at_once() -> None:
    outcome = classify_response(*response(200, {"status": "succeeded", "result": {"n": 1}}))
    assert isinstance(outcome, CompletedAtOnce)
    assert json.loads(outcome.result) == {"n": 1}


def test_200_reporting_a_failure_is_reported_with_its_retryability() -> None:
    outcome = classify_response(
        *response(200, {"status": "failed", "error": {"message": "corrupt", "retryable": False}})
    )
    assert isinstance(outcome, Failed)
    assert outcome.failure.kind is FailureKind.REPORTED
    assert outcome.failure.message == "corrupt"
    assert outcome.failure.retryable is False


def test_reported_failure_is_retryable_by_default() -> None:
    outcome = classify_response(*response(200, {"status": "failed", "error": {"message": "x"}}))
    assert isinstance(outcome, Failed)
    assert outcome.failure.retryable is True
    outcome = classify_response(*response(200, {"status": "failed"}))
    assert isinstance(outcome, Failed)
    assert outcome.failure.retryable is True
    assert outcome.failure.message


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 429])
def test_server_errors_408_and_429_are_retryable(status: int) -> None:
    outcome = classify_response(*response(status, {"detail": "busy"}))
    assert isinstance(outcome, Failed)
    assert outcome.failure.kind is FailureKind.HTTP_STATUS
    assert outcome.failure.http_status == status
    assert outcome.failure.retryable is True
    assert str(status) in outcome.failure.message
    assert "busy" in outcome.failure.message


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 301])
def test_other_non_2xx_are_not_retryable(status: int) -> None:
    outcome = classify_response(*response(status))
    assert isinstance(outcome, Failed)
    assert outcome.failure.kind is FailureKind.HTTP_STATUS
    assert outcome.failure.http_status == status
    assert outcome.failure.retryable is False


def test_long_bodies_are_cut_in_the_message() -> None:
    outcome = classify_response(*response(500, text="x" * 10_000))
    assert isinstance(outcome, Failed)
    assert len(outcome.failure.message) < 400


# -- the real call over HTTP ---------------------------------------------------------------


def client_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"connect_timeout_seconds": 1.0, "request_timeout_seconds": 1.0}
    return Settings(**{**values, **overrides})


async def test_sends_the_body_and_the_trace_header() -> None:
    async with stub_backend() as stub, BackendClient(client_settings()) as client:
        outcome = await client.dispatch(stub.url, {"job_id": "j1"}, "trace-1")
    assert outcome == Accepted(202)
    (call,) = stub.calls
    assert call.body == {"job_id": "j1"}
    assert call.headers["x-trace-id"] == "trace-1"
    assert call.headers["content-type"] == "application/json"


async def test_refused_connection_is_unreachable_and_retryable() -> None:
    async with refusing_url() as url, BackendClient(client_settings()) as client:
        outcome = await client.dispatch(url, {}, "t")
    assert isinstance(outcome, Failed)
    assert outcome.failure.kind is FailureKind.UNREACHABLE
    assert outcome.failure.retryable is True
    assert url in outcome.failure.message


async def test_unknown_host_is_unreachable_and_retryable() -> None:
    async with BackendClient(client_settings()) as client:
        outcome = await client.dispatch("http://no-such-host.invalid/jobs", {}, "t")
    assert isinstance(outcome, Failed)
    assert outcome.failure.kind is FailureKind.UNREACHABLE
    assert outcome.failure.retryable is True


async def test_a_bad_url_is_not_retryable() -> None:
    async with BackendClient(client_settings()) as client:
        outcome = await client.dispatch("ftp://example.test/jobs", {}, "t")
    assert isinstance(outcome, Failed)
    assert outcome.failure.kind is FailureKind.UNREACHABLE
    assert outcome.failure.retryable is False


async def test_a_slow_answer_is_a_retryable_timeout() -> None:
    async def slow(_: dict[str, Any]) -> Response:
        await asyncio.sleep(2)
        return JSONResponse({}, status_code=202)

    settings = client_settings(request_timeout_seconds=0.3)
    async with stub_backend(slow) as stub, BackendClient(settings) as client:
        outcome = await client.dispatch(stub.url, {}, "t")
    assert isinstance(outcome, Failed)
    assert outcome.failure.kind is FailureKind.TIMEOUT
    assert outcome.failure.retryable is True


async def test_real_answers_are_classified() -> None:
    answers: list[Response] = [
        PlainTextResponse("boom", status_code=500),
        JSONResponse({"detail": "no such route"}, status_code=404),
        JSONResponse({"status": "succeeded", "result": [1]}, status_code=200),
        PlainTextResponse("accepted", status_code=200),
    ]

    async def next_answer(_: dict[str, Any]) -> Response:
        return answers.pop(0)

    async with stub_backend(next_answer) as stub, BackendClient(client_settings()) as client:
        outcomes = [await client.dispatch(stub.url, {}, "t") for _ in range(4)]
    first, second, third, fourth = outcomes
    assert isinstance(first, Failed)
    assert (first.failure.http_status, first.failure.retryable) == (500, True)
    assert isinstance(second, Failed)
    assert (second.failure.http_status, second.failure.retryable) == (404, False)
    assert third == CompletedAtOnce("[1]")
    assert fourth == Accepted(200)


@pytest.mark.parametrize(
    "body",
    [
        b'{"status": "succeeded", "result": {"score": NaN}}',
        b'{"status": "succeeded", "result": [Infinity]}',
        b'{"status": "succeeded", "result": "lone \\ud800 surrogate"}',
    ],
)
def test_a_result_that_is_no_json_text_fails_the_attempt_for_good(body: bytes) -> None:
    """What the gateway refuses from a callback (422) is refused from an answer at once:
    stored, it could not be read back as JSON nor sent in an e-mail."""
    outcome = classify_response(200, body)
    assert isinstance(outcome, Failed)
    assert outcome.failure.kind is FailureKind.REJECTED
    assert outcome.failure.retryable is False
    assert "not valid JSON text" in outcome.failure.message
