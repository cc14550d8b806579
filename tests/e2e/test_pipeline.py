"""The seeds' sequences end to end, over real Kafka, the document store and SMTP."""

from __future__ import annotations

import asyncio
from typing import Any

from jobplane.events import JobCompleted, JobDead, JobRequested, JobRetryScheduled

from tests.e2e.conftest import PLATFORM_ADMIN, Platform
from tests.e2e.kafka_io import job_requested_record, produce, single_object_encode
from tests.support import eventually, free_port


def finished(status: dict[str, Any]) -> bool:
    return status["status"] in ("succeeded", "dead") and status["notified"]["user"]


def alerts_about(platform: Platform, address: str, job_id: str) -> list[Any]:
    return [m for m in platform.mails_to(address) if job_id in m.text()]


async def test_success_first_time(platform: Platform) -> None:
    app = await platform.register_app()
    user_id, email = await platform.register_user(app)

    job_id = await platform.submit(app, user_id, {"behaviour": "succeed"})
    status = await platform.wait_until(app, job_id, finished)

    assert status["status"] == "succeeded"
    assert status["attempt"] == 1
    assert status["result"] == {"thumbnail": f"{job_id}.png"}
    assert status["notified"]["user"] is True
    [call] = platform.backend.calls_for(job_id)
    assert call.body["callback_url"].endswith(f"/v1/jobs/{job_id}/result")
    assert call.trace_id  # the trace id travels with the dispatch
    [mail] = await platform.wait_for_mails(email, 1)
    assert job_id in mail.text()
    await asyncio.sleep(1)  # a second e-mail would have arrived by now
    assert len(platform.mails_to(email)) == 1
    assert alerts_about(platform, app.admin_email, job_id) == []
    assert alerts_about(platform, PLATFORM_ADMIN, job_id) == []


async def test_always_failing_job_dies_after_five_retries(platform: Platform) -> None:
    app = await platform.register_app()
    user_id, email = await platform.register_user(app)

    job_id = await platform.submit(app, user_id, {"behaviour": "fail"})
    status = await platform.wait_until(app, job_id, finished, timeout=60)

    assert status["status"] == "dead"
    assert [a["attempt"] for a in status["attempts"]] == [1, 2, 3, 4, 5, 6]
    calls = platform.backend.calls_for(job_id)
    assert [c.attempt for c in calls] == [1, 2, 3, 4, 5, 6]
    for tier in range(1, 6):
        [scheduled] = await platform.events(platform.topics.retry(tier), JobRetryScheduled, job_id)
        assert scheduled.retry_number == tier
        # Never early: the next attempt reaches the backend only after the tier's due time.
        assert calls[tier].received_at >= scheduled.due_at
    [dead] = await platform.events(platform.topics.dead, JobDead, job_id)
    assert [a.attempt for a in dead.attempts] == [1, 2, 3, 4, 5, 6]

    [user_mail] = await platform.wait_for_mails(email, 1)
    assert job_id in user_mail.text()
    for admin in (app.admin_email, PLATFORM_ADMIN):
        [alert] = await _wait_for_alert(platform, admin, job_id)
        text = alert.text()
        for attempt in range(1, 7):
            assert f"attempt {attempt} broke" in text
    await asyncio.sleep(1)
    assert len(platform.mails_to(email)) == 1
    assert len(alerts_about(platform, PLATFORM_ADMIN, job_id)) == 1


async def test_fails_twice_then_succeeds(platform: Platform) -> None:
    app = await platform.register_app()
    user_id, email = await platform.register_user(app, language="ja")

    job_id = await platform.submit(app, user_id, {"fail_times": 2})
    status = await platform.wait_until(app, job_id, finished, timeout=30)

    assert status["status"] == "succeeded"
    assert status["attempt"] == 3
    assert [a["error"] is not None for a in status["attempts"]] == [True, True, False]
    [mail] = await platform.wait_for_mails(email, 1)
    assert job_id in mail.text()
    assert alerts_about(platform, app.admin_email, job_id) == []


async def test_unreachable_backend_is_retried_until_dead(platform: Platform) -> None:
    closed_port = free_port()
    app = await platform.register_app(backend_url=f"http://127.0.0.1:{closed_port}/jobs")
    user_id, email = await platform.register_user(app)

    job_id = await platform.submit(app, user_id, {"behaviour": "succeed"})
    status = await platform.wait_until(app, job_id, finished, timeout=60)

    assert status["status"] == "dead"
    assert len(status["attempts"]) == 6
    assert {a["error"]["kind"] for a in status["attempts"]} == {"unreachable"}
    await platform.wait_for_mails(email, 1)
    await _wait_for_alert(platform, app.admin_email, job_id)


async def test_backend_error_500_is_retried(platform: Platform) -> None:
    app = await platform.register_app()
    user_id, _ = await platform.register_user(app)

    job_id = await platform.submit(app, user_id, {"behaviour": "http_500"})
    status = await platform.wait_until(app, job_id, finished, timeout=60)

    assert status["status"] == "dead"
    assert len(platform.backend.calls_for(job_id)) == 6
    assert {(a["error"]["kind"], a["error"]["http_status"]) for a in status["attempts"]} == {
        ("http_status", 500)
    }


async def test_backend_that_never_calls_back_times_out(platform: Platform) -> None:
    app = await platform.register_app(default_timeout_seconds=1)
    user_id, _ = await platform.register_user(app)

    job_id = await platform.submit(app, user_id, {"behaviour": "silent"})
    status = await platform.wait_until(app, job_id, finished, timeout=90)

    assert status["status"] == "dead"
    assert [a["error"]["kind"] for a in status["attempts"]] == ["timeout"] * 6
    assert len(platform.backend.calls_for(job_id)) == 6


async def test_permanent_failure_is_dead_at_once(platform: Platform) -> None:
    app = await platform.register_app()
    user_id, email = await platform.register_user(app)

    job_id = await platform.submit(app, user_id, {"behaviour": "permanent"})
    status = await platform.wait_until(app, job_id, finished, timeout=30)

    assert status["status"] == "dead"
    assert len(status["attempts"]) == 1
    assert status["attempts"][0]["error"]["retryable"] is False
    await platform.wait_for_mails(email, 1)
    [alert] = await _wait_for_alert(platform, app.admin_email, job_id)
    assert "the video is corrupt" in alert.text()


async def test_app_producing_to_kafka_directly(platform: Platform) -> None:
    app = await platform.register_app()
    user_id, email = await platform.register_user(app)
    record = job_requested_record(app.app_id, user_id, {"behaviour": "succeed"})
    value = single_object_encode("job_requested.avsc", record)

    # Sent twice: a duplicated event must not run the job twice nor send a second e-mail.
    await produce(platform.kafka_bootstrap, platform.topics.requested, record["job_id"], value, 2)
    status = await platform.wait_until(app, record["job_id"], finished)

    assert status["status"] == "succeeded"
    assert len(platform.backend.calls_for(record["job_id"])) == 1
    await platform.wait_for_mails(email, 1)
    await asyncio.sleep(1)
    assert len(platform.mails_to(email)) == 1


async def test_direct_job_for_unknown_app_goes_dead(platform: Platform) -> None:
    record = job_requested_record("no-such-app", "someone", {"behaviour": "succeed"})
    value = single_object_encode("job_requested.avsc", record)
    await produce(platform.kafka_bootstrap, platform.topics.requested, record["job_id"], value)

    found: list[JobDead] = []

    async def gone_dead() -> bool:
        nonlocal found
        found = await platform.events(platform.topics.dead, JobDead, record["job_id"])
        return bool(found)

    await eventually(gone_dead, 20, lambda: f"{record['job_id']} never went dead", 0.2)
    [dead] = found
    assert "no-such-app" in dead.reason
    await _wait_for_alert(platform, PLATFORM_ADMIN, record["job_id"])


async def test_idempotent_submit_and_replayed_callback(platform: Platform) -> None:
    app = await platform.register_app()
    user_id, email = await platform.register_user(app)

    first = await platform.submit(app, user_id, {}, **{"Idempotency-Key": "order-42"})
    second = await platform.submit(app, user_id, {}, **{"Idempotency-Key": "order-42"})
    assert first == second
    await platform.wait_until(app, first, finished)
    [call] = platform.backend.calls_for(first)

    # The backend reports again: the first report of the attempt wins. The same report is
    # "already recorded"; a contradicting one is a 409; neither changes anything.
    token = {"Authorization": f"Bearer {call.body['callback_token']}"}
    contradicting = await platform.http.post(
        f"/v1/jobs/{first}/result",
        json={"attempt": 1, "status": "failed", "error": {"message": "late"}},
        headers=token,
    )
    assert contradicting.status_code == 409
    replay = await platform.http.post(
        f"/v1/jobs/{first}/result",
        json={"attempt": 1, "status": "succeeded", "result": {"thumbnail": f"{first}.png"}},
        headers=token,
    )
    assert replay.status_code == 200
    assert replay.json()["recorded"] is False
    await asyncio.sleep(1.5)
    status = await platform.status(app, first)
    assert status["status"] == "succeeded"
    assert status["result"] == {"thumbnail": f"{first}.png"}
    assert len(platform.mails_to(email)) == 1
    requested = await platform.events(platform.topics.requested, JobRequested, first)
    assert {e.attempt for e in requested} == {1}
    completed = await platform.events(platform.topics.completed, JobCompleted, first)
    assert len(completed) == 1  # a replayed report publishes nothing


async def _wait_for_alert(platform: Platform, admin: str, job_id: str) -> list[Any]:
    alerts: list[Any] = []

    async def alerted() -> bool:
        nonlocal alerts
        alerts = alerts_about(platform, admin, job_id)
        return bool(alerts)

    await eventually(alerted, 30, lambda: f"no alert about {job_id} for {admin}", 0.2)
    return alerts
