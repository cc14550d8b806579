"""Validate at the door: bad input is refused with a 4xx JSON body saying what is wrong,
before anything is stored."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import HTTPException
from jobplane.connections import Connections
from jobplane.jobs import Job
from jobplane.store import NewJob, utcnow
from jobplane_gateway.api.routes.jobs import _encoded
from jobplane_gateway.config import Settings
from jobplane_gateway.main import create_app

from .harness import ADMIN, BASE_URL, Gateway

# Line breaks to str.splitlines() that pydantic's ``\s`` does not match: they once reached
# an e-mail header and stopped all mail.
LINE_BREAKS = ["\x1c", "\x1d", "\x1e", "\x85", "\u2028"]


async def jobs_of(gateway: Gateway, app_id: str) -> int:
    return await gateway.conns.store.jobs.count_documents({"app_id": app_id})


async def test_line_breaks_and_control_characters_are_refused_everywhere(
    gateway: Gateway,
) -> None:
    app = await gateway.register_app()
    user_id = await gateway.register_user(app)
    for char in [*LINE_BREAKS, "\x00", "\n", "\x7f", "\u2029"]:
        email = await gateway.http.put(
            "/v1/users/u1", json={"email": f"0@0{char}.example.com"}, headers=app.headers
        )
        assert email.status_code == 422, repr(char)
        local = await gateway.http.put(
            "/v1/users/u1", json={"email": f"a{char}b@example.com"}, headers=app.headers
        )
        assert local.status_code == 422, repr(char)
        in_path = await gateway.http.put(
            f"/v1/users/{quote(f'u{char}1', safe='')}",
            json={"email": "a@example.com"},
            headers=app.headers,
        )
        assert in_path.status_code in (404, 422), repr(char)
        for fields in ({"job_type": f"thumb{char}nail"}, {"user_id": f"{user_id}{char}"}):
            body = {"user_id": user_id, "job_type": "t", "payload": {}, **fields}
            job = await gateway.http.post("/v1/jobs", json=body, headers=app.headers)
            assert job.status_code == 422, (repr(char), fields)
            assert job.json()["detail"][0]["msg"], fields
        admin = await gateway.http.post(
            "/v1/apps",
            json={
                "app_id": "a1",
                "backend_url": "http://b.test/",
                "admin_emails": [f"ops{char}@example.com"],
            },
            headers=ADMIN,
        )
        assert admin.status_code == 422, repr(char)
        key = await gateway.submit(
            app,
            user_id,
            headers={"Idempotency-Key": f"k{char}1".encode()},  # type: ignore[dict-item]
        )
        assert key.status_code == 422, repr(char)
    assert await jobs_of(gateway, app.app_id) == 0
    assert await gateway.conns.store.users.count_documents({"app_id": app.app_id}) == 1
    assert await gateway.conns.store.apps.count_documents({"_id": "a1"}) == 0


@pytest.mark.parametrize(
    "email",
    ["not-an-email", "a@b", "a@@example.com", "a b@example.com", "a@example..com", "x" * 250],
)
async def test_addresses_go_through_a_real_validator(gateway: Gateway, email: str) -> None:
    app = await gateway.register_app()
    response = await gateway.http.put("/v1/users/u1", json={"email": email}, headers=app.headers)
    assert response.status_code == 422
    assert "email" in json.dumps(response.json()["detail"])


async def test_ids_and_job_types_have_bounded_safe_forms(gateway: Gateway) -> None:
    app = await gateway.register_app()
    user_id = await gateway.register_user(app, "user.1+x_2")
    assert (await gateway.submit(app, user_id, job_type="video/encode-1.2")).status_code == 202
    for fields in (
        {"job_type": "x" * 101},
        {"job_type": "thumb nail"},
        {"job_type": "-leading"},
        {"user_id": "u" * 129},
        {"user_id": "a/b"},
    ):
        body = {"user_id": user_id, "job_type": "t", "payload": {}, **fields}
        response = await gateway.http.post("/v1/jobs", json=body, headers=app.headers)
        assert response.status_code == 422, fields
    too_long_key = await gateway.submit(app, user_id, headers={"Idempotency-Key": "k" * 201})
    assert too_long_key.status_code == 422
    assert await jobs_of(gateway, app.app_id) == 1


@pytest.mark.parametrize("timeout", [0, -1, 86_401, 2**31, 10**12, 1.5, "60"])
async def test_a_job_timeout_is_one_second_to_one_day(gateway: Gateway, timeout: Any) -> None:
    app = await gateway.register_app()
    user_id = await gateway.register_user(app)
    response = await gateway.submit(app, user_id, timeout_seconds=timeout)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "timeout_seconds"]
    assert await jobs_of(gateway, app.app_id) == 0


async def test_a_one_day_timeout_is_accepted(gateway: Gateway) -> None:
    app = await gateway.register_app(default_timeout_seconds=86_400, max_concurrency=10_000)
    user_id = await gateway.register_user(app)
    assert (await gateway.submit(app, user_id, timeout_seconds=86_400)).status_code == 202


@pytest.mark.parametrize(
    "fields",
    [
        {"default_timeout_seconds": 10**12},
        {"default_timeout_seconds": 0},
        {"default_timeout_seconds": 86_401},
        {"max_concurrency": 0},
        {"max_concurrency": 10**9},
        {"admin_emails": [f"a{i}@example.com" for i in range(51)]},
        {"backend_url": "http://b.test/" + "x" * 2000},
        {"backend_url": "ftp://b.test/"},
    ],
)
async def test_an_apps_numbers_and_sizes_are_bounded(
    gateway: Gateway, fields: dict[str, Any]
) -> None:
    body = {"app_id": "bounded", "backend_url": "http://b.test/", **fields}
    response = await gateway.http.post("/v1/apps", json=body, headers=ADMIN)
    assert response.status_code == 422, response.text
    assert await gateway.conns.store.apps.count_documents({"_id": "bounded"}) == 0


async def test_payloads_that_are_not_json_text_are_refused(gateway: Gateway) -> None:
    app = await gateway.register_app()
    user_id = await gateway.register_user(app)
    headers = {**app.headers, "Content-Type": "application/json"}
    for payload in ('{"x": NaN}', '{"x": Infinity}', '{"x": "\\ud800"}'):
        content = f'{{"user_id": "{user_id}", "job_type": "t", "payload": {payload}}}'
        response = await gateway.http.post("/v1/jobs", content=content, headers=headers)
        assert response.status_code == 422, payload
        assert response.json()["detail"][0]["loc"] == ["body", "payload"]
    assert await jobs_of(gateway, app.app_id) == 0


@pytest.fixture
async def small_limits(settings: Settings, conns: Connections) -> AsyncIterator[Gateway]:
    """The gateway with 4 KiB payload and result limits."""
    limited = settings.model_copy(update={"max_payload_bytes": 4096, "max_result_bytes": 4096})
    transport = httpx.ASGITransport(app=create_app(limited, conns))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        yield Gateway(http=http, conns=conns, settings=limited)


async def test_a_payload_over_the_limit_is_413_with_the_limit(small_limits: Gateway) -> None:
    gateway = small_limits
    app = await gateway.register_app()
    user_id = await gateway.register_user(app)
    fits = await gateway.submit(app, user_id, payload={"x": "a" * 4000})
    too_big = await gateway.submit(app, user_id, payload={"x": "a" * 4090})

    assert fits.status_code == 202
    assert too_big.status_code == 413
    assert too_big.json() == {
        "detail": "the payload is 4098 bytes of JSON; the limit is 4096 bytes (MAX_PAYLOAD_BYTES)"
    }
    # Multi-byte characters count as the bytes they take.
    wide = await gateway.submit(app, user_id, payload={"x": "写" * 1400})
    assert wide.status_code == 413
    assert await jobs_of(gateway, app.app_id) == 1


async def test_a_huge_body_is_refused_before_it_is_read(small_limits: Gateway) -> None:
    gateway = small_limits
    app = await gateway.register_app()
    user_id = await gateway.register_user(app)
    huge = json.dumps({"user_id": user_id, "job_type": "t", "payload": {"x": "a" * 17_000_000}})

    declared = await gateway.http.post(
        "/v1/jobs", content=huge, headers={**app.headers, "Content-Type": "application/json"}
    )

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(huge), 65_536):
            yield huge[start : start + 65_536].encode()

    streamed = await gateway.http.post(
        "/v1/jobs", content=chunks(), headers={**app.headers, "Content-Type": "application/json"}
    )

    limit = 2 * 4096 + 64 * 1024
    for response in (declared, streamed):
        assert response.status_code == 413
        assert f"the limit is {limit} bytes" in response.json()["detail"]
    assert "content-length" not in streamed.request.headers
    assert await jobs_of(gateway, app.app_id) == 0


async def test_a_result_over_the_limit_is_413_and_records_nothing(small_limits: Gateway) -> None:
    gateway = small_limits
    app = await gateway.register_app()
    job = await gateway.submitted_job(app)
    token = await gateway.dispatch(job.job_id, 1)

    response = await gateway.http.post(
        f"/v1/jobs/{job.job_id}/result",
        json={"attempt": 1, "status": "succeeded", "result": "r" * 5000},
        headers={"Authorization": f"Bearer {token}"},
    )

    assert response.status_code == 413
    assert "the limit is 4096 bytes (MAX_RESULT_BYTES)" in response.json()["detail"]
    stored = await gateway.conns.store.get_job(job.job_id)
    assert stored is not None
    assert stored.status.value == "running"
    assert stored.result is None
    assert stored.attempt_info(1).report is None  # type: ignore[union-attr]


def test_a_job_whose_event_cannot_be_encoded_is_refused() -> None:
    # Bounds keep such input out; the encoding gate before the write is the last line.
    new = NewJob(
        job_id="j1",
        app_id="a",
        user_id="u",
        job_type="t",
        payload="{}",
        timeout_seconds=2**31,  # an Avro int holds at most 2**31 - 1
        trace_id="t",
    )
    with pytest.raises(HTTPException) as refused:
        _encoded(Job.from_document(new.document(utcnow(), utcnow())).requested_event())
    assert refused.value.status_code == 422
    assert "cannot be encoded as a job.requested event" in str(refused.value.detail)
