"""Dead-letter redrive through the API on the real store and Kafka: by ids or by filter, a
dry run, the rate limit, idempotence, an app's own jobs and the admin's any."""

from __future__ import annotations

import time
from typing import Any

import httpx
from jobplane.events import Failure, FailureKind, JobRequested
from jobplane.jobs import Job, JobStatus

from ...harness import ADMIN, Gateway, RegisteredApp

TIMEOUT = Failure(kind=FailureKind.TIMEOUT, message="no answer", retryable=True)
REFUSED = Failure(kind=FailureKind.REJECTED, message="bad input", retryable=False)


async def dead_job(gateway: Gateway, app: RegisteredApp, failure: Failure = TIMEOUT) -> Job:
    """A job of ``app`` whose first attempt failed for good."""
    job = await gateway.submitted_job(app)
    await gateway.dispatch(job.job_id, 1)
    store = gateway.conns.store
    assert await store.report_failure(job.job_id, 1, failure)
    dead = await store.mark_dead(job.job_id, 1, failure)
    assert dead is not None
    return dead


async def redrive(
    gateway: Gateway, body: dict[str, Any], headers: dict[str, str], *, admin: bool = False
) -> httpx.Response:
    path = "/v1/admin/dead/redrive" if admin else "/v1/dead/redrive"
    return await gateway.http.post(path, json=body, headers=headers)


async def test_an_app_redrives_its_dead_job_by_id_once(gateway: Gateway) -> None:
    app = await gateway.register_app()
    dead = await dead_job(gateway, app)

    first = await redrive(gateway, {"job_ids": [dead.job_id]}, app.headers)
    second = await redrive(gateway, {"job_ids": [dead.job_id]}, app.headers)

    assert first.status_code == second.status_code == 200, first.text
    assert first.json() == {
        "dry_run": False,
        "matched": 1,
        "redriven": [dead.job_id],
        "skipped": [],
    }
    assert second.json() == {
        "dry_run": False,
        "matched": 0,
        "redriven": [],
        "skipped": [{"job_id": dead.job_id, "reason": "not dead (queued)"}],
    }
    status = (await gateway.http.get(f"/v1/jobs/{dead.job_id}", headers=app.headers)).json()
    assert status["status"] == "queued"
    assert (status["attempt"], status["next_attempt"], status["run_attempt"]) == (1, 2, 0)
    [entry] = status["redrives"]
    assert (entry["by"], entry["from_attempt"]) == (f"app:{app.app_id}", 1)
    assert entry["error"]["kind"] == "timeout"
    assert [a["attempt"] for a in status["attempts"]] == [1]  # the earlier run is kept
    # The new run's first request is announced at once, for attempt 2.
    requested = await gateway.wait_events(
        gateway.conns.topics.requested, JobRequested, dead.job_id, count=2
    )
    assert [e.attempt for e in requested] == [1, 2]


async def test_an_app_cannot_redrive_another_apps_job(gateway: Gateway) -> None:
    owner, other = await gateway.register_app(), await gateway.register_app()
    dead = await dead_job(gateway, owner)

    by_id = await redrive(gateway, {"job_ids": [dead.job_id]}, other.headers)
    by_filter = await redrive(gateway, {}, other.headers)
    naming = await redrive(gateway, {"app_id": owner.app_id}, other.headers)

    assert by_id.json()["skipped"] == [{"job_id": dead.job_id, "reason": "no such job"}]
    assert by_filter.json()["matched"] == 0
    assert naming.status_code == 422
    job = await gateway.conns.store.get_job(dead.job_id)
    assert job is not None and job.status is JobStatus.DEAD


async def test_the_admin_redrives_by_filter_after_a_dry_run(gateway: Gateway) -> None:
    photos, videos = await gateway.register_app(), await gateway.register_app()
    timed_out = [await dead_job(gateway, photos) for _ in range(2)]
    refused = await dead_job(gateway, photos, REFUSED)
    other_app = await dead_job(gateway, videos)
    body = {"app_id": photos.app_id, "failure_kind": "timeout"}

    dry = await redrive(gateway, {**body, "dry_run": True}, ADMIN, admin=True)
    store = gateway.conns.store
    still = [await store.get_job(j.job_id) for j in timed_out]
    wet = await redrive(gateway, body, ADMIN, admin=True)

    assert dry.status_code == wet.status_code == 200, dry.text
    expected = sorted(j.job_id for j in timed_out)
    assert dry.json()["dry_run"] and sorted(dry.json()["redriven"]) == expected
    assert all(j is not None and j.status is JobStatus.DEAD for j in still)
    assert (wet.json()["matched"], sorted(wet.json()["redriven"])) == (2, expected)
    for untouched in (refused, other_app):
        job = await store.get_job(untouched.job_id)
        assert job is not None and job.status is JobStatus.DEAD
    for redriven in timed_out:
        job = await store.get_job(redriven.job_id)
        assert job is not None and job.redrives[0].by == "admin"


async def test_a_filter_redrives_at_most_limit_jobs(gateway: Gateway) -> None:
    app = await gateway.register_app()
    for _ in range(3):
        await dead_job(gateway, app)

    response = await redrive(gateway, {"limit": 2}, app.headers)

    assert response.json()["matched"] == 2 and len(response.json()["redriven"]) == 2


async def test_redrives_keep_to_the_rate(gateway: Gateway) -> None:
    app = await gateway.register_app()
    jobs = [await dead_job(gateway, app) for _ in range(3)]

    started = time.monotonic()
    response = await redrive(
        gateway, {"job_ids": [j.job_id for j in jobs], "rate_per_second": 5}, app.headers
    )
    took = time.monotonic() - started

    assert len(response.json()["redriven"]) == 3
    assert took >= 0.4  # three redrives at 5 a second: two intervals of 0.2 s at least


async def test_a_repeat_with_the_idempotency_key_answers_the_first_result(
    gateway: Gateway,
) -> None:
    app = await gateway.register_app()
    dead = await dead_job(gateway, app)
    key = {**app.headers, "Idempotency-Key": "redrive-1"}

    first = await redrive(gateway, {"job_ids": [dead.job_id]}, key)
    repeat = await redrive(gateway, {"job_ids": [dead.job_id]}, key)
    as_admin = await redrive(
        gateway, {"job_ids": [dead.job_id]}, {**ADMIN, "Idempotency-Key": "redrive-1"}, admin=True
    )

    assert first.json() == repeat.json()
    assert first.json()["redriven"] == [dead.job_id]
    # Keys are the caller's own: the admin's same key is another request.
    assert as_admin.json()["skipped"] == [{"job_id": dead.job_id, "reason": "not dead (queued)"}]
    job = await gateway.conns.store.get_job(dead.job_id)
    assert job is not None and len(job.redrives) == 1


async def test_bad_redrive_requests_are_422(gateway: Gateway) -> None:
    app = await gateway.register_app()
    bodies: tuple[dict[str, Any], ...] = (
        {"job_ids": []},
        {"job_ids": ["x"], "failure_kind": "timeout"},
        {"job_ids": ["bad id!"]},
        {"limit": 0},
        {"limit": 1001},
        {"rate_per_second": 0},
        {"rate_per_second": 1001},
        {"failure_kind": "boredom"},
        {"since": "2026-01-01T00:00:00"},
        {"since": "0001-01-01T00:00:00+14:00"},  # before year 1 in UTC
        {"until": "9999-12-31T23:59:59-14:00"},  # after year 9999 in UTC
        {"surprise": True},
    )
    for body in bodies:
        response = await redrive(gateway, body, app.headers)
        assert response.status_code == 422, body
    not_json = await gateway.http.post(
        "/v1/dead/redrive", content=b"{}", headers={**app.headers, "Content-Type": "text/plain"}
    )
    assert not_json.status_code == 415


async def test_a_redrive_too_slow_for_its_rate_is_refused_before_it_starts(
    gateway: Gateway,
) -> None:
    app = await gateway.register_app()
    jobs = [await dead_job(gateway, app) for _ in range(2)]

    response = await redrive(
        gateway, {"job_ids": [j.job_id for j in jobs], "rate_per_second": 0.001}, app.headers
    )

    assert response.status_code == 422
    assert "REDRIVE_MAX_SECONDS" in response.json()["detail"]
    for job in jobs:
        stored = await gateway.conns.store.get_job(job.job_id)
        assert stored is not None and stored.status is JobStatus.DEAD
