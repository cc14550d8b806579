from __future__ import annotations

import asyncio
import json
from datetime import timedelta

from jobplane.events import Failure, FailureKind, JobRequested
from jobplane.jobs import JobStatus
from jobplane.store import utcnow

from ...harness import BASE_URL, Gateway


async def test_submit_stores_the_job_and_announces_it_on_kafka(gateway: Gateway) -> None:
    app = await gateway.register_app()
    user_id = await gateway.register_user(app)
    payload = {"photo": "p1.jpg", "sizes": [64, 128], "label": "写真"}

    response = await gateway.submit(
        app,
        user_id,
        payload=payload,
        timeout_seconds=90,
        headers={"X-Trace-Id": "trace-submit-1"},
    )

    assert response.status_code == 202, response.text
    body = response.json()
    job_id = body["job_id"]
    assert body == {
        "job_id": job_id,
        "status": "queued",
        "status_url": f"{BASE_URL}/v1/jobs/{job_id}",
    }
    assert response.headers["x-trace-id"] == "trace-submit-1"
    job = await gateway.conns.store.get_job(job_id)
    assert job is not None
    assert (job.app_id, job.user_id, job.job_type) == (app.app_id, user_id, "thumbnail")
    assert (job.status, job.attempt, job.timeout_seconds) == (JobStatus.QUEUED, 1, 90)
    assert json.loads(job.payload) == payload
    assert job.trace_id == "trace-submit-1"

    [event] = await gateway.wait_events(gateway.conns.topics.requested, JobRequested, job_id)
    assert (event.app_id, event.user_id, event.attempt) == (app.app_id, user_id, 1)
    assert event.job_type == "thumbnail"
    assert event.payload == job.payload
    assert json.loads(event.payload) == payload
    assert event.timeout_seconds == 90
    assert event.trace_id == "trace-submit-1"


async def test_submit_without_a_trace_id_gets_a_new_one(gateway: Gateway) -> None:
    app = await gateway.register_app()
    user_id = await gateway.register_user(app)
    response = await gateway.submit(app, user_id)
    trace_id = response.headers["x-trace-id"]
    assert len(trace_id) >= 16
    [event] = await gateway.wait_events(
        gateway.conns.topics.requested, JobRequested, response.json()["job_id"]
    )
    assert event.trace_id == trace_id
    assert event.timeout_seconds is None  # the app's default applies


async def test_a_user_must_be_registered_first(gateway: Gateway) -> None:
    app = await gateway.register_app()
    response = await gateway.submit(app, "ghost")
    assert response.status_code == 422
    assert response.json() == {
        "detail": "user 'ghost' is not registered: register it with PUT /v1/users/ghost first"
    }
    assert await gateway.conns.store.jobs.count_documents({"app_id": app.app_id}) == 0


async def test_a_user_of_another_app_does_not_count(gateway: Gateway) -> None:
    one = await gateway.register_app()
    other = await gateway.register_app()
    user_id = await gateway.register_user(one)
    response = await gateway.submit(other, user_id)
    assert response.status_code == 422


async def test_idempotent_submit_returns_the_same_job(gateway: Gateway) -> None:
    app = await gateway.register_app()
    user_id = await gateway.register_user(app)
    key = {"Idempotency-Key": "order-42"}

    first = await gateway.submit(app, user_id, headers=key)
    again = await gateway.submit(app, user_id, headers=key)

    assert first.status_code == again.status_code == 202
    job_id = first.json()["job_id"]
    assert again.json()["job_id"] == job_id
    assert await gateway.conns.store.jobs.count_documents({"app_id": app.app_id}) == 1
    # The replay publishes nothing: the first request's job owes its event in the store
    # (the outbox relay covers a lost announcement).
    events = await gateway.wait_events(gateway.conns.topics.requested, JobRequested, job_id)
    assert [e.attempt for e in events] == [1]

    # Once dispatched, a replay only answers: the job is under way.
    await gateway.dispatch(job_id, 1)
    third = await gateway.submit(app, user_id, headers=key)
    assert third.status_code == 202
    assert third.json()["job_id"] == job_id
    assert third.json()["status"] == "running"
    assert len(await gateway.events(gateway.conns.topics.requested, JobRequested, job_id)) == 1

    # Another key is another job.
    other = await gateway.submit(app, user_id, headers={"Idempotency-Key": "order-43"})
    assert other.json()["job_id"] != job_id


async def test_idempotency_keys_are_per_app(gateway: Gateway) -> None:
    one = await gateway.register_app()
    other = await gateway.register_app()
    key = {"Idempotency-Key": "same-key"}
    first = await gateway.submit(one, await gateway.register_user(one), headers=key)
    second = await gateway.submit(other, await gateway.register_user(other), headers=key)
    assert first.json()["job_id"] != second.json()["job_id"]


async def test_an_idempotency_key_reused_for_another_request_is_a_conflict(
    gateway: Gateway,
) -> None:
    app = await gateway.register_app()
    user_id = await gateway.register_user(app)
    key = {"Idempotency-Key": "k-1"}
    await gateway.submit(app, user_id, payload={"n": 1}, headers=key)
    response = await gateway.submit(app, user_id, payload={"n": 2}, headers=key)
    assert response.status_code == 409
    assert "Idempotency-Key" in response.json()["detail"]


async def test_another_app_cannot_see_the_job(gateway: Gateway) -> None:
    owner = await gateway.register_app()
    other = await gateway.register_app()
    job = await gateway.submitted_job(owner)

    response = await gateway.http.get(f"/v1/jobs/{job.job_id}", headers=other.headers)

    assert response.status_code == 404
    assert response.json() == {"detail": f"no job '{job.job_id}'"}
    unknown = await gateway.http.get("/v1/jobs/nope", headers=owner.headers)
    assert unknown.status_code == 404


async def test_status_of_a_new_job(gateway: Gateway) -> None:
    app = await gateway.register_app()
    job = await gateway.submitted_job(app)

    response = await gateway.http.get(f"/v1/jobs/{job.job_id}", headers=app.headers)

    assert response.status_code == 200
    body = response.json()
    assert body == {
        "job_id": job.job_id,
        "app_id": app.app_id,
        "user_id": job.user_id,
        "job_type": "thumbnail",
        "status": "queued",
        # No attempt has begun; the first one waits for its dispatch.
        "attempt": 0,
        "next_attempt": 1,
        "attempts": [],
        "result": None,
        "last_error": None,
        "notified": {"user": False, "user_at": None, "admins": False, "admins_at": None},
        "webhook": None,
        "next_attempt_at": None,
        "created_at": body["created_at"],
        "updated_at": body["updated_at"],
        "run_attempt": 0,
        "redrives": [],
        "cancelled": None,
        "held_at": None,
    }
    assert body["created_at"].endswith("Z") or body["created_at"].endswith("+00:00")


async def test_status_shows_attempts_errors_and_notifications(gateway: Gateway) -> None:
    app = await gateway.register_app()
    job = await gateway.submitted_job(app)
    store = gateway.conns.store
    await gateway.dispatch(job.job_id, 1)
    failure = Failure(
        kind=FailureKind.HTTP_STATUS,
        message="backend answered 503",
        retryable=True,
        http_status=503,
    )
    due = utcnow() + timedelta(minutes=5)
    assert await store.schedule_retry(job.job_id, 1, failure, due) is not None
    waiting = (await gateway.http.get(f"/v1/jobs/{job.job_id}", headers=app.headers)).json()
    # The status's attempt is the last one in attempts[]; the retry is next_attempt.
    assert waiting["status"] == "retry_scheduled"
    assert [a["attempt"] for a in waiting["attempts"]] == [1]
    assert (waiting["attempt"], waiting["next_attempt"]) == (1, 2)
    assert waiting["next_attempt_at"]
    await gateway.dispatch(job.job_id, 2)
    assert await store.complete(job.job_id, 2, json.dumps({"thumb": "t.jpg"})) is not None
    await store.jobs.update_one({"_id": job.job_id}, {"$set": {"notified_user_at": utcnow()}})

    body = (await gateway.http.get(f"/v1/jobs/{job.job_id}", headers=app.headers)).json()

    assert body["status"] == "succeeded"
    assert (body["attempt"], body["next_attempt"]) == (2, None)
    assert body["result"] == {"thumb": "t.jpg"}
    error = {"kind": "http_status", "message": "backend answered 503", "retryable": True}
    assert body["last_error"] == {**error, "http_status": 503}
    first, second = body["attempts"]
    assert set(first) == {
        "attempt",
        "dispatched_at",
        "accepted_at",
        "ended_at",
        "error",
        "report",
    }
    assert first["attempt"] == 1
    assert first["error"] == {**error, "http_status": 503}
    assert first["dispatched_at"] and first["accepted_at"] and first["ended_at"]
    assert second["attempt"] == 2
    assert second["error"] is None
    assert second["ended_at"]
    assert body["notified"]["user"] is True
    assert body["notified"]["user_at"]
    assert body["notified"]["admins"] is False
    assert "token" not in json.dumps(body)


async def test_submit_needs_a_valid_app_key(gateway: Gateway) -> None:
    app = await gateway.register_app()
    user_id = await gateway.register_user(app)
    body = {"user_id": user_id, "job_type": "t", "payload": {}}
    for headers in (
        {},
        {"Authorization": f"Bearer {app.app_id}.wrong"},
        {"Authorization": f"Bearer {app.api_key}x"},
        {"Authorization": f"Basic {app.api_key}"},
    ):
        response = await gateway.http.post("/v1/jobs", json=body, headers=headers)
        assert response.status_code == 401, headers
        assert isinstance(response.json()["detail"], str)
    status = await gateway.http.get("/v1/jobs/anything")
    assert status.status_code == 401
    assert await gateway.conns.store.jobs.count_documents({"app_id": app.app_id}) == 0


async def test_bad_submissions_are_4xx_json_saying_what_is_wrong(gateway: Gateway) -> None:
    app = await gateway.register_app()
    user_id = await gateway.register_user(app)
    headers = {**app.headers, "Content-Type": "application/json"}
    bodies = [
        b'{"user_id": "x", "job_type": ',  # not JSON
        b"[1, 2]",
        json.dumps({"user_id": user_id, "job_type": "t", "payload": [1]}).encode(),
        json.dumps({"user_id": user_id, "job_type": "t"}).encode(),
        json.dumps({"user_id": user_id, "job_type": "", "payload": {}}).encode(),
        json.dumps(
            {"user_id": user_id, "job_type": "t", "payload": {}, "timeout_seconds": 0}
        ).encode(),
        json.dumps({"user_id": user_id, "job_type": "t", "payload": {}, "extra": 1}).encode(),
    ]
    for content in bodies:
        response = await gateway.http.post("/v1/jobs", content=content, headers=headers)
        assert response.status_code == 422, content
        detail = response.json()["detail"]
        assert detail, content
        assert all("msg" in error and "loc" in error for error in detail), content
    assert await gateway.conns.store.jobs.count_documents({"app_id": app.app_id}) == 0


async def test_concurrent_submits_with_one_idempotency_key_store_one_job(
    gateway: Gateway,
) -> None:
    app = await gateway.register_app()
    user_id = await gateway.register_user(app)
    key = {"Idempotency-Key": "burst-1"}

    responses = await asyncio.gather(*(gateway.submit(app, user_id, headers=key) for _ in range(8)))

    assert {r.status_code for r in responses} == {202}
    assert len({r.json()["job_id"] for r in responses}) == 1
    [doc] = await gateway.conns.store.jobs.find({"app_id": app.app_id}).to_list()
    # The key is a field of the job (unique per app), not a second collection.
    assert doc["idempotency_key"] == "burst-1"
    assert "idempotency_keys" not in await gateway.conns.store.db.list_collection_names()
    events = await gateway.wait_events(gateway.conns.topics.requested, JobRequested, doc["_id"])
    assert len(events) == 1


async def test_an_app_lists_its_own_jobs_only(gateway: Gateway) -> None:
    app, other = await gateway.register_app(), await gateway.register_app()
    mine = [await gateway.submitted_job(app) for _ in range(3)]
    theirs = await gateway.submitted_job(other)
    await gateway.conns.store.jobs.update_one({"_id": mine[0].job_id}, {"$set": {"status": "dead"}})

    first = await gateway.http.get("/v1/jobs", params={"limit": 2}, headers=app.headers)
    rest = await gateway.http.get(
        "/v1/jobs", params={"cursor": first.json()["next_cursor"]}, headers=app.headers
    )
    dead = await gateway.http.get("/v1/jobs", params={"status": "dead"}, headers=app.headers)
    anonymous = await gateway.http.get("/v1/jobs")

    listed = [j["job_id"] for j in first.json()["jobs"] + rest.json()["jobs"]]
    assert listed == [j.job_id for j in reversed(mine)]
    assert theirs.job_id not in listed
    assert rest.json()["next_cursor"] is None
    assert [j["job_id"] for j in dead.json()["jobs"]] == [mine[0].job_id]
    assert anonymous.status_code == 401
