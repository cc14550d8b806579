"""Cancelling jobs through the API on the real store and Kafka, and the release of a
disabled app's held jobs when it is enabled again."""

from __future__ import annotations

from datetime import timedelta

from jobplane.events import Failure, FailureKind, JobCompleted
from jobplane.jobs import JobStatus
from jobplane.store import APP_CACHE_TTL_SECONDS, utcnow

from ...harness import ADMIN, Gateway
from .test_results import callback, running_job


async def test_an_app_cancels_its_queued_job_once(gateway: Gateway) -> None:
    app = await gateway.register_app()
    job = await gateway.submitted_job(app)

    first = await gateway.http.post(f"/v1/jobs/{job.job_id}/cancel", headers=app.headers)
    again = await gateway.http.post(f"/v1/jobs/{job.job_id}/cancel", headers=app.headers)

    assert first.status_code == 200, first.text
    body = first.json()
    assert body["status"] == "cancelled"
    assert body["cancelled"]["by"] == f"app:{app.app_id}"
    assert body["next_attempt"] is None
    assert again.status_code == 409
    assert again.json()["status"] == "cancelled"
    assert "cancelled already" in again.json()["detail"]
    stored = await gateway.conns.store.get_job(job.job_id)
    assert stored is not None and stored.announce_due_at is None


async def test_an_app_cannot_cancel_another_apps_job(gateway: Gateway) -> None:
    owner, other = await gateway.register_app(), await gateway.register_app()
    job = await gateway.submitted_job(owner)

    response = await gateway.http.post(f"/v1/jobs/{job.job_id}/cancel", headers=other.headers)
    missing = await gateway.http.post("/v1/jobs/no-such-job/cancel", headers=owner.headers)

    assert response.status_code == missing.status_code == 404
    stored = await gateway.conns.store.get_job(job.job_id)
    assert stored is not None and stored.status is JobStatus.QUEUED


async def test_the_admin_cancels_any_job_but_not_a_finished_one(gateway: Gateway) -> None:
    app, job_id, _ = await running_job(gateway)
    _, done_id, done_token = await running_job(gateway)
    await callback(gateway, done_id, done_token, {"attempt": 1, "status": "succeeded"})

    cancelled = await gateway.http.post(f"/v1/admin/jobs/{job_id}/cancel", headers=ADMIN)
    finished = await gateway.http.post(f"/v1/admin/jobs/{done_id}/cancel", headers=ADMIN)
    as_app = await gateway.http.post(f"/v1/admin/jobs/{job_id}/cancel", headers=app.headers)

    assert cancelled.status_code == 200, cancelled.text
    assert (cancelled.json()["status"], cancelled.json()["cancelled"]["by"]) == (
        "cancelled",
        "admin",
    )
    assert "payload" in cancelled.json()  # the admin's view of the job
    assert finished.status_code == 409
    assert finished.json()["status"] == "succeeded"
    assert as_app.status_code == 403


async def test_a_cancelled_running_jobs_callback_is_kept_and_changes_nothing(
    gateway: Gateway,
) -> None:
    app, job_id, token = await running_job(gateway)
    cancelled = await gateway.http.post(f"/v1/jobs/{job_id}/cancel", headers=app.headers)
    assert cancelled.status_code == 200
    report = {"attempt": 1, "status": "succeeded", "result": {"ok": True}}

    late = await callback(gateway, job_id, token, report)
    repeat = await callback(gateway, job_id, token, report)
    contradicting = await callback(
        gateway,
        job_id,
        token,
        {"attempt": 1, "status": "failed", "error": {"message": "x", "retryable": True}},
    )
    forged = await callback(gateway, job_id, "not-the-token", report)

    assert late.status_code == 200, late.text
    assert late.json()["recorded"] is True
    assert "cancelled" in late.json()["detail"]
    assert repeat.status_code == 200 and repeat.json()["recorded"] is False
    assert contradicting.status_code == 409
    assert forged.status_code == 401
    status = (await gateway.http.get(f"/v1/jobs/{job_id}", headers=app.headers)).json()
    assert (status["status"], status["result"]) == ("cancelled", None)
    assert status["attempts"][0]["report"]["status"] == "succeeded"
    # Nothing announced: no job.completed, so no e-mail either.
    assert await gateway.events(gateway.conns.topics.completed, JobCompleted, job_id) == []


async def test_enabling_an_app_again_releases_its_held_jobs(gateway: Gateway) -> None:
    app = await gateway.register_app()
    job = await gateway.submitted_job(app)
    store = gateway.conns.store
    disable = await gateway.http.patch(
        f"/v1/admin/apps/{app.app_id}", json={"disabled": True}, headers=ADMIN
    )
    assert disable.status_code == 200
    far = utcnow() + timedelta(hours=1)
    assert await store.hold(job.job_id, 1, app_id=app.app_id, recheck_at=far)
    held = (await gateway.http.get(f"/v1/jobs/{job.job_id}", headers=ADMIN)).json()
    assert held["status"] == "queued" and held["held_at"] is not None

    before = utcnow()
    enable = await gateway.http.patch(
        f"/v1/admin/apps/{app.app_id}", json={"disabled": False}, headers=ADMIN
    )

    assert enable.status_code == 200
    released = await store.get_job(job.job_id)
    assert released is not None and released.held_at is None
    assert released.status is JobStatus.QUEUED
    # Owed again once no service can still see the app disabled (its cache's life).
    assert released.announce_due_at is not None
    assert before + timedelta(seconds=APP_CACHE_TTL_SECONDS) < released.announce_due_at < far


async def test_a_late_callback_of_an_earlier_attempt_of_a_cancelled_job_keeps_nothing(
    gateway: Gateway,
) -> None:
    app, job_id, token = await running_job(gateway)
    store = gateway.conns.store
    failure = Failure(kind=FailureKind.TIMEOUT, message="late", retryable=True)
    assert await store.schedule_retry(job_id, 1, failure, utcnow() + timedelta(hours=1))
    await gateway.dispatch(job_id, 2)
    assert (await gateway.http.post(f"/v1/jobs/{job_id}/cancel", headers=app.headers)).is_success

    late = await callback(gateway, job_id, token, {"attempt": 1, "status": "succeeded"})

    assert late.status_code == 200
    assert late.json() == {
        "recorded": False,
        "detail": "changes nothing: attempt 1 is over, the job is at attempt 2 (cancelled)",
    }
    job = await store.get_job(job_id)
    assert job is not None and job.status is JobStatus.CANCELLED
    second = job.attempt_info(2)
    assert second is not None and second.report is None
