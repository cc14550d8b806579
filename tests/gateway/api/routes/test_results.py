from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import httpx
from jobplane.events import Failure, FailureKind, JobCompleted, JobFailed
from jobplane.jobs import JobStatus
from jobplane.store import utcnow

from tests.support import read_events

from ...harness import Gateway, RegisteredApp


async def callback(
    gateway: Gateway, job_id: str, token: str, body: Any, **headers: str
) -> httpx.Response:
    return await gateway.http.post(
        f"/v1/jobs/{job_id}/result",
        json=body,
        headers={"Authorization": f"Bearer {token}", **headers},
    )


async def running_job(gateway: Gateway) -> tuple[RegisteredApp, str, str]:
    """A job whose attempt 1 runs at the backend: (app, job id, callback token)."""
    app = await gateway.register_app()
    job = await gateway.submitted_job(app)
    token = await gateway.dispatch(job.job_id, 1)
    return app, job.job_id, token


async def test_success_completes_the_job_and_announces_it(gateway: Gateway) -> None:
    app, job_id, token = await running_job(gateway)
    result = {"thumbnails": ["s.jpg", "m.jpg"], "faces": 2}

    response = await callback(
        gateway, job_id, token, {"attempt": 1, "status": "succeeded", "result": result}
    )

    assert response.status_code == 200
    assert response.json() == {"recorded": True, "detail": "result recorded: the job succeeded"}
    job = await gateway.conns.store.get_job(job_id)
    assert job is not None
    assert (job.status, job.attempt) == (JobStatus.SUCCEEDED, 1)
    status = (await gateway.http.get(f"/v1/jobs/{job_id}", headers=app.headers)).json()
    assert status["status"] == "succeeded"
    assert status["result"] == result
    [event] = await gateway.wait_events(gateway.conns.topics.completed, JobCompleted, job_id)
    assert (event.app_id, event.user_id, event.attempt) == (app.app_id, job.user_id, 1)
    assert event.job_type == "thumbnail"
    assert json.loads(event.result) == result
    # Without an X-Trace-Id of its own, the callback joins the job's trace.
    assert event.trace_id == job.trace_id
    assert response.headers["x-trace-id"] == job.trace_id


async def test_a_result_may_be_any_json_value_and_the_callback_may_come_while_dispatched(
    gateway: Gateway,
) -> None:
    app = await gateway.register_app()
    job = await gateway.submitted_job(app)
    token = await gateway.dispatch(job.job_id, 1, running=False)

    response = await callback(
        gateway,
        job.job_id,
        token,
        {"attempt": 1, "status": "succeeded", "result": [1, "two", None]},
        **{"X-Trace-Id": "backend-trace"},
    )

    assert response.json()["recorded"] is True
    status = (await gateway.http.get(f"/v1/jobs/{job.job_id}", headers=app.headers)).json()
    assert status["result"] == [1, "two", None]
    [event] = await gateway.wait_events(gateway.conns.topics.completed, JobCompleted, job.job_id)
    assert event.trace_id == "backend-trace"


async def test_a_replayed_success_is_not_recorded_again(gateway: Gateway) -> None:
    _, job_id, token = await running_job(gateway)
    body = {"attempt": 1, "status": "succeeded", "result": {"n": 1}}
    await callback(gateway, job_id, token, body)
    before = await gateway.conns.store.get_job(job_id)

    replay = await callback(gateway, job_id, token, body)
    other = await callback(gateway, job_id, token, {**body, "result": {"n": 2}})

    assert replay.status_code == 200
    assert replay.json() == {"recorded": False, "detail": "already recorded: attempt 1 succeeded"}
    # Another result for the same attempt contradicts the recorded one.
    assert other.status_code == 409
    assert "another outcome recorded already (succeeded)" in other.json()["detail"]
    assert await gateway.conns.store.get_job(job_id) == before
    # Announced once: the store owes the event until the notifier acts on it, so a replay
    # publishes nothing (the outbox relay covers a lost announcement).
    events = await gateway.wait_events(gateway.conns.topics.completed, JobCompleted, job_id)
    assert [json.loads(e.result) for e in events] == [{"n": 1}]


async def test_a_late_callback_of_an_old_attempt_changes_nothing(gateway: Gateway) -> None:
    _, job_id, old_token = await running_job(gateway)
    store = gateway.conns.store
    failure = Failure(kind=FailureKind.TIMEOUT, message="no result in time", retryable=True)
    assert await store.schedule_retry(job_id, 1, failure, utcnow() + timedelta(minutes=1))
    await gateway.dispatch(job_id, 2)
    before = await store.get_job(job_id)

    success = await callback(gateway, job_id, old_token, {"attempt": 1, "status": "succeeded"})
    failed = await callback(
        gateway, job_id, old_token, {"attempt": 1, "status": "failed", "error": {"message": "x"}}
    )

    for response in (success, failed):
        assert response.status_code == 200
        assert response.json() == {
            "recorded": False,
            "detail": "changes nothing: attempt 1 is over, the job is at attempt 2 (running)",
        }
    assert await store.get_job(job_id) == before
    assert await gateway.events(gateway.conns.topics.completed, JobCompleted, job_id) == []
    assert await gateway.events(gateway.conns.topics.failed, JobFailed, job_id) == []


async def test_a_callback_needs_the_token_of_its_attempt(gateway: Gateway) -> None:
    _, job_id, token = await running_job(gateway)
    store = gateway.conns.store
    failure = Failure(kind=FailureKind.UNREACHABLE, message="refused", retryable=True)
    assert await store.schedule_retry(job_id, 1, failure, utcnow() + timedelta(minutes=1))
    token_2 = await gateway.dispatch(job_id, 2)
    before = await store.get_job(job_id)
    succeeded: dict[str, Any] = {"status": "succeeded", "result": 1}

    cases = [
        (f"{token_2}x", {**succeeded, "attempt": 2}),  # wrong token
        (token, {**succeeded, "attempt": 2}),  # another attempt's token
        (token_2, {**succeeded, "attempt": 1}),
        (token_2, {**succeeded, "attempt": 3}),  # no such attempt yet
    ]
    for bad_token, body in cases:
        response = await callback(gateway, job_id, bad_token, body)
        assert response.status_code == 401, body
        assert response.json()["detail"] == f"invalid callback token for attempt {body['attempt']}"
    missing = await gateway.http.post(f"/v1/jobs/{job_id}/result", json={**succeeded, "attempt": 2})
    assert missing.status_code == 401
    assert await store.get_job(job_id) == before
    assert await gateway.events(gateway.conns.topics.completed, JobCompleted, job_id) == []

    ok = await callback(gateway, job_id, token_2, {**succeeded, "attempt": 2})
    assert ok.json()["recorded"] is True


async def test_a_callback_for_an_unknown_job_is_404(gateway: Gateway) -> None:
    response = await callback(gateway, "no-such-job", "t", {"attempt": 1, "status": "succeeded"})
    assert response.status_code == 404
    assert response.json() == {"detail": "no job 'no-such-job'"}


async def test_a_reported_failure_goes_to_the_retry_service(gateway: Gateway) -> None:
    app, job_id, token = await running_job(gateway)

    response = await callback(
        gateway,
        job_id,
        token,
        {
            "attempt": 1,
            "status": "failed",
            "error": {"message": "corrupt image", "retryable": False},
        },
    )

    assert response.status_code == 200
    assert response.json()["recorded"] is True
    [event] = await gateway.wait_events(gateway.conns.topics.failed, JobFailed, job_id)
    assert event.failure == Failure(
        kind=FailureKind.REPORTED, message="corrupt image", retryable=False
    )
    job = await gateway.conns.store.get_job(job_id)
    assert job is not None
    assert (event.app_id, event.user_id, event.attempt) == (app.app_id, job.user_id, 1)
    assert (event.job_type, event.payload, event.timeout_seconds) == (
        job.job_type,
        job.payload,
        job.timeout_seconds,
    )
    assert event.trace_id == job.trace_id
    # The retry service decides: the gateway leaves the status alone.
    assert (job.status, job.attempt) == (JobStatus.RUNNING, 1)


async def test_a_reported_failure_is_retryable_unless_said_otherwise(gateway: Gateway) -> None:
    _, job_id, token = await running_job(gateway)
    await callback(
        gateway, job_id, token, {"attempt": 1, "status": "failed", "error": {"message": "busy"}}
    )
    [event] = await gateway.wait_events(gateway.conns.topics.failed, JobFailed, job_id)
    assert (event.failure.message, event.failure.retryable) == ("busy", True)
    assert event.failure.kind is FailureKind.REPORTED


async def test_a_failure_must_say_what_failed(gateway: Gateway) -> None:
    _, job_id, token = await running_job(gateway)
    for body in (
        {"attempt": 1, "status": "failed"},
        {"attempt": 1, "status": "failed", "error": None},
        {"attempt": 1, "status": "succeeded", "error": {"message": "x"}},
    ):
        response = await callback(gateway, job_id, token, body)
        assert response.status_code == 422, body
        assert "error" in json.dumps(response.json()["detail"]), body
    job = await gateway.conns.store.get_job(job_id)
    assert job is not None
    assert job.attempt_info(1) is not None
    assert job.attempt_info(1).report is None  # type: ignore[union-attr]
    assert await gateway.events(gateway.conns.topics.failed, JobFailed, job_id) == []


async def test_a_failure_after_success_is_a_conflict_and_changes_nothing(
    gateway: Gateway,
) -> None:
    _, job_id, token = await running_job(gateway)
    await callback(gateway, job_id, token, {"attempt": 1, "status": "succeeded", "result": "ok"})

    response = await callback(
        gateway, job_id, token, {"attempt": 1, "status": "failed", "error": {"message": "late"}}
    )

    assert response.status_code == 409
    assert response.json() == {
        "detail": (
            "attempt 1 has another outcome recorded already (succeeded): "
            "this report changes nothing"
        )
    }
    assert await gateway.events(gateway.conns.topics.failed, JobFailed, job_id) == []
    job = await gateway.conns.store.get_job(job_id)
    assert job is not None
    assert job.status is JobStatus.SUCCEEDED


async def test_bad_callback_bodies_are_4xx_json(gateway: Gateway) -> None:
    _, job_id, token = await running_job(gateway)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    bodies = [
        b"{not json",
        b'"succeeded"',
        json.dumps({"status": "succeeded"}).encode(),
        json.dumps({"attempt": 0, "status": "succeeded"}).encode(),
        json.dumps({"attempt": "one", "status": "succeeded"}).encode(),
        json.dumps({"attempt": 1, "status": "done"}).encode(),
        json.dumps({"attempt": 1, "status": "failed", "error": {"retryable": False}}).encode(),
        *(
            json.dumps(
                {"attempt": 1, "status": "failed", "error": {"message": f"disk{char}full"}}
            ).encode()
            for char in ("\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\x00")
        ),
        json.dumps({"attempt": 1, "status": "succeeded", "extra": 1}).encode(),
    ]
    for content in bodies:
        response = await gateway.http.post(
            f"/v1/jobs/{job_id}/result", content=content, headers=headers
        )
        assert response.status_code == 422, content
        assert response.json()["detail"], content
    job = await gateway.conns.store.get_job(job_id)
    assert job is not None
    assert job.status is JobStatus.RUNNING


async def test_ten_identical_failure_callbacks_at_once_record_and_announce_one(
    gateway: Gateway,
) -> None:
    _, job_id, token = await running_job(gateway)
    body = {"attempt": 1, "status": "failed", "error": {"message": "disk full"}}

    responses = await asyncio.gather(*(callback(gateway, job_id, token, body) for _ in range(10)))

    assert [r.status_code for r in responses] == [200] * 10
    details = sorted(r.json()["detail"] for r in responses)
    assert details.count("failure recorded: the retry policy decides what follows") == 1
    assert details.count("already recorded: attempt 1 failed") == 9
    events = await read_events(
        gateway.settings,
        gateway.conns.topics.failed,
        JobFailed,
        key=job_id,
        until=lambda found: len(found) >= 1,
        settle=1.0,
    )
    assert len(events) == 1
    job = await gateway.conns.store.get_job(job_id)
    assert job is not None
    report = job.attempt_info(1).report  # type: ignore[union-attr]
    assert report is not None and report.status == "failed"
    assert report.failure == Failure(kind=FailureKind.REPORTED, message="disk full", retryable=True)
    # The outcome is known: no deadline left to sweep; the failure is owed until the retry
    # router acts on it.
    assert job.deadline_at is None
    assert job.announce_due_at is not None


async def test_success_after_a_reported_failure_is_a_conflict_and_changes_nothing(
    gateway: Gateway,
) -> None:
    app, job_id, token = await running_job(gateway)
    failed = await callback(
        gateway, job_id, token, {"attempt": 1, "status": "failed", "error": {"message": "x"}}
    )
    before = await gateway.conns.store.get_job(job_id)

    succeeded = await callback(
        gateway, job_id, token, {"attempt": 1, "status": "succeeded", "result": {"ok": 1}}
    )

    assert failed.json()["recorded"] is True
    assert succeeded.status_code == 409
    assert "another outcome recorded already (failed)" in succeeded.json()["detail"]
    assert await gateway.conns.store.get_job(job_id) == before
    assert await gateway.events(gateway.conns.topics.completed, JobCompleted, job_id) == []
    status = (await gateway.http.get(f"/v1/jobs/{job_id}", headers=app.headers)).json()
    assert status["status"] == "running"
    [attempt] = status["attempts"]
    assert attempt["report"]["status"] == "failed"
    assert attempt["report"]["error"]["message"] == "x"


async def test_status_shows_the_user_notified_from_the_mail_record(gateway: Gateway) -> None:
    app, job_id, token = await running_job(gateway)
    await callback(gateway, job_id, token, {"attempt": 1, "status": "succeeded", "result": 1})
    url = f"/v1/jobs/{job_id}"
    claimed = {"mail.succeeded": {"state": "claimed", "claimed_at": utcnow()}}
    await gateway.conns.store.jobs.update_one({"_id": job_id}, {"$set": claimed})
    before = (await gateway.http.get(url, headers=app.headers)).json()
    sent = {"mail.succeeded.state": "sent", "mail.succeeded.sent_at": utcnow()}
    await gateway.conns.store.jobs.update_one({"_id": job_id}, {"$set": sent})

    after = (await gateway.http.get(url, headers=app.headers)).json()

    assert before["notified"]["user"] is False
    assert after["notified"]["user"] is True
    assert after["attempts"][0]["report"]["status"] == "succeeded"
