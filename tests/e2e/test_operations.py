"""The operators' tools end to end, over real Kafka, the document store and SMTP: a dead
job redriven, a disabled app's job held and run once it is enabled, a job cancelled."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.e2e.conftest import ADMIN_KEY, PLATFORM_ADMIN, Platform
from tests.e2e.test_pipeline import alerts_about, finished

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


async def _redrive(platform: Platform, job_id: str) -> dict[str, Any]:
    response = await platform.http.post(
        "/v1/admin/dead/redrive", json={"job_ids": [job_id]}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_dead_job_redriven_succeeds_and_its_user_hears_of_each_run(
    platform: Platform,
) -> None:
    app = await platform.register_app()
    user_id, email = await platform.register_user(app)
    # Six attempts fail (the first run dies); the seventh, the redriven run's first, succeeds.
    job_id = await platform.submit(app, user_id, {"fail_times": 6})
    dead = await platform.wait_until(app, job_id, finished, timeout=60)
    assert dead["status"] == "dead"
    await platform.wait_for_mails(email, 1)

    redrive = await _redrive(platform, job_id)
    again = await _redrive(platform, job_id)

    assert redrive["redriven"] == [job_id]
    assert again["redriven"] == [] and again["skipped"][0]["job_id"] == job_id
    status = await platform.wait_until(app, job_id, finished, timeout=60)
    assert status["status"] == "succeeded"
    assert [a["attempt"] for a in status["attempts"]] == [1, 2, 3, 4, 5, 6, 7]
    assert status["run_attempt"] == 1
    [entry] = status["redrives"]
    assert (entry["by"], entry["from_attempt"], entry["user_mails"]) == (
        "admin",
        6,
        {"dead": "sent"},
    )
    assert [c.attempt for c in platform.backend.calls_for(job_id)] == [1, 2, 3, 4, 5, 6, 7]
    # One mail per run to the user (its death, then its success), one alert for the death.
    mails = await platform.wait_for_mails(email, 2)
    await asyncio.sleep(1)  # a third mail would have arrived by now
    assert len(platform.mails_to(email)) == 2
    assert job_id in mails[0].text() and job_id in mails[1].text()
    assert len(alerts_about(platform, app.admin_email, job_id)) == 1
    assert len(alerts_about(platform, PLATFORM_ADMIN, job_id)) == 1


async def test_a_redriven_job_that_fails_again_gets_a_full_allowance_and_dies_once_more(
    platform: Platform,
) -> None:
    app = await platform.register_app()
    user_id, email = await platform.register_user(app)
    job_id = await platform.submit(app, user_id, {"behaviour": "fail"})
    await platform.wait_until(app, job_id, finished, timeout=60)
    await platform.wait_for_mails(email, 1)

    assert (await _redrive(platform, job_id))["redriven"] == [job_id]
    status = await platform.wait_until(
        app, job_id, lambda s: s["status"] == "dead" and bool(s["redrives"]), timeout=60
    )

    # The retries start over: six more attempts, numbered on from the first run's.
    assert [c.attempt for c in platform.backend.calls_for(job_id)] == list(range(1, 13))
    assert status["run_attempt"] == 6
    await platform.wait_for_mails(email, 2)
    await asyncio.sleep(1)
    assert len(platform.mails_to(email)) == 2
    assert len(alerts_about(platform, app.admin_email, job_id)) == 2


async def test_a_disabled_apps_job_is_held_and_runs_once_the_app_is_enabled(
    platform: Platform,
) -> None:
    app = await platform.register_app()
    user_id, email = await platform.register_user(app)
    # Attempt 1 runs silently into its deadline, while the app gets disabled: its retry
    # falls due when every service sees the app disabled (their app cache lives 10 s).
    submitted = await platform.http.post(
        "/v1/jobs",
        json={
            "user_id": user_id,
            "job_type": "thumbnail",
            "payload": {"silent_times": 1},
            "timeout_seconds": 12,
        },
        headers=app.headers,
    )
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["job_id"]
    disable = await platform.http.patch(
        f"/v1/admin/apps/{app.app_id}", json={"disabled": True}, headers=ADMIN
    )
    assert disable.status_code == 200
    refused = await platform.http.post(
        "/v1/jobs",
        json={"user_id": user_id, "job_type": "thumbnail", "payload": {}},
        headers=app.headers,
    )
    assert refused.status_code == 403

    held = await platform.wait_until(app, job_id, lambda s: s["held_at"] is not None, timeout=40)
    assert held["status"] in ("queued", "retry_scheduled")
    await asyncio.sleep(2)
    assert [c.attempt for c in platform.backend.calls_for(job_id)] == [1]

    enable = await platform.http.patch(
        f"/v1/admin/apps/{app.app_id}", json={"disabled": False}, headers=ADMIN
    )
    assert enable.status_code == 200
    status = await platform.wait_until(app, job_id, finished, timeout=60)
    assert status["status"] == "succeeded" and status["held_at"] is None
    assert [c.attempt for c in platform.backend.calls_for(job_id)] == [1, 2]
    await platform.wait_for_mails(email, 1)


async def test_a_cancelled_running_job_is_never_retried_and_mails_nobody(
    platform: Platform,
) -> None:
    app = await platform.register_app()
    user_id, email = await platform.register_user(app)
    # The backend works 2 s, then reports a failure that would be retried.
    job_id = await platform.submit(app, user_id, {"behaviour": "fail", "delay": 2})
    await platform.wait_until(app, job_id, lambda s: s["status"] == "running")

    response = await platform.http.post(f"/v1/jobs/{job_id}/cancel", headers=app.headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"

    status = await platform.wait_until(
        app, job_id, lambda s: s["attempts"][0]["report"] is not None, timeout=20
    )
    assert status["status"] == "cancelled"
    assert status["attempts"][0]["report"]["status"] == "failed"
    await asyncio.sleep(2)  # a retry (0.3 s) or a mail would have come by now
    assert [c.attempt for c in platform.backend.calls_for(job_id)] == [1]
    assert platform.mails_to(email) == []
    assert alerts_about(platform, app.admin_email, job_id) == []
    final = await platform.status(app, job_id)
    assert (final["status"], final["attempt"], final["next_attempt"]) == ("cancelled", 1, None)
    again = await platform.http.post(f"/v1/jobs/{job_id}/cancel", headers=app.headers)
    assert again.status_code == 409 and again.json()["status"] == "cancelled"
