"""The administrators' API on the real store: listings and their cursors, filters, any
job's timeline, app updates and disabling, counts by status."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from jobplane.jobs import Job
from jobplane.store import MailClaim, MailState, utcnow

from ...harness import ADMIN, Gateway, RegisteredApp


async def _jobs(gateway: Gateway, app: RegisteredApp, count: int) -> list[Job]:
    user_id = await gateway.register_user(app)
    jobs = []
    for _ in range(count):
        response = await gateway.submit(app, user_id)
        assert response.status_code == 202, response.text
        job = await gateway.conns.store.get_job(response.json()["job_id"])
        assert job is not None
        jobs.append(job)
    return jobs


async def _set(gateway: Gateway, job: Job, **changes: Any) -> None:
    await gateway.conns.store.jobs.update_one({"_id": job.job_id}, {"$set": changes})


async def _all_pages(gateway: Gateway, limit: int, **params: Any) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        response = await gateway.http.get("/v1/admin/jobs", params=query, headers=ADMIN)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["jobs"]) <= limit
        listed += body["jobs"]
        cursor = body["next_cursor"]
        if cursor is None:
            return listed
    raise AssertionError("the cursor never ends")


async def test_pages_list_every_job_once_newest_first_even_when_they_share_a_millisecond(
    gateway: Gateway,
) -> None:
    app = await gateway.register_app()
    jobs = await _jobs(gateway, app, 7)
    # Four jobs created in the same millisecond: the id orders them, the cursor must not
    # skip nor repeat any of them across a page boundary.
    same = utcnow() + timedelta(seconds=5)
    for job in jobs[:4]:
        await _set(gateway, job, created_at=same)

    listed = await _all_pages(gateway, limit=3)

    ids = [j["job_id"] for j in listed]
    assert sorted(ids) == sorted(j.job_id for j in jobs)
    assert len(set(ids)) == len(ids)
    stored = {j.job_id: j.created_at for j in jobs} | {j.job_id: same for j in jobs[:4]}
    assert ids == sorted(ids, key=lambda i: (stored[i], i), reverse=True)
    assert ids[:4] == sorted((j.job_id for j in jobs[:4]), reverse=True)
    # A summary: no payload, no result.
    assert {"payload", "result"}.isdisjoint(listed[0])
    assert (listed[0]["attempt"], listed[0]["next_attempt"]) == (0, 1)


async def test_filters_narrow_the_listing(gateway: Gateway) -> None:
    photos, videos = await gateway.register_app(), await gateway.register_app()
    p1, p2, p3 = await _jobs(gateway, photos, 3)
    [v1] = await _jobs(gateway, videos, 1)
    failure = {"kind": "timeout", "message": "no answer", "retryable": True, "http_status": None}
    await _set(gateway, p1, status="dead", last_failure=failure)
    await _set(gateway, v1, status="dead", last_failure={**failure, "kind": "rejected"})
    await _set(gateway, p2, job_type="video.encode")
    old = utcnow() - timedelta(days=3)
    await _set(gateway, p3, created_at=old)

    async def ids(**params: Any) -> set[str]:
        return {j["job_id"] for j in await _all_pages(gateway, limit=200, **params)}

    assert await ids() == {p1.job_id, p2.job_id, p3.job_id, v1.job_id}
    assert await ids(app_id=photos.app_id) == {p1.job_id, p2.job_id, p3.job_id}
    assert await ids(status="dead") == {p1.job_id, v1.job_id}
    assert await ids(status="dead", app_id=videos.app_id) == {v1.job_id}
    assert await ids(failure_kind="timeout") == {p1.job_id}
    assert await ids(job_type="video.encode") == {p2.job_id}
    boundary = (old + timedelta(seconds=1)).isoformat()
    assert await ids(created_before=boundary) == {p3.job_id}
    assert await ids(created_from=boundary) == {p1.job_id, p2.job_id, v1.job_id}
    assert await ids(created_from=old.isoformat(), created_before=boundary) == {p3.job_id}


async def test_bad_listing_parameters_are_422(gateway: Gateway) -> None:
    for params in (
        {"limit": 201},
        {"limit": 0},
        {"cursor": "not-a-cursor"},
        {"cursor": "WyJ4Il0"},  # a cursor of another listing
        {"status": "lost"},
        {"failure_kind": "boredom"},
        {"app_id": "Bad_Id"},
        {"created_from": "2026-01-01T00:00:00"},  # no time zone
        {"created_from": "0001-01-01T00:00:00+14:00"},  # before year 1 in UTC
        {"created_before": "9999-12-31T23:59:59-14:00"},  # after year 9999 in UTC
        {"cursor": "WzFlMzAsICJ4Il0"},  # [1e30, "x"]
        {"cursor": "WzEwMDAwMDAwMDAwMDAwMDAwMDAwMDAsICJ4Il0"},  # a date past year 9999
    ):
        response = await gateway.http.get("/v1/admin/jobs", params=params, headers=ADMIN)
        assert response.status_code == 422, params
        assert response.json()["detail"], params


async def test_every_admin_route_needs_the_admin_key(gateway: Gateway) -> None:
    app = await gateway.register_app()
    [job] = await _jobs(gateway, app, 1)
    routes = [
        ("GET", "/v1/admin/jobs"),
        ("GET", f"/v1/admin/jobs/{job.job_id}"),
        ("GET", "/v1/admin/apps"),
        ("GET", f"/v1/admin/apps/{app.app_id}/users"),
        ("PATCH", f"/v1/admin/apps/{app.app_id}"),
        ("GET", "/v1/admin/stats"),
        ("POST", f"/v1/admin/jobs/{job.job_id}/cancel"),
        ("POST", "/v1/admin/dead/redrive"),
    ]
    openapi = (await gateway.http.get("/openapi.json")).json()
    documented = {
        (method.upper(), path)
        for path, item in openapi["paths"].items()
        if path.startswith("/v1/admin")
        for method in item
    }
    assert len(documented) == len(routes)
    for method, path in routes:
        kwargs: dict[str, Any] = {"json": {"disabled": True}} if method == "PATCH" else {}
        if path.endswith("/redrive"):
            kwargs = {"json": {"dry_run": True}}
        none = await gateway.http.request(method, path, **kwargs)
        as_app = await gateway.http.request(method, path, headers=app.headers, **kwargs)
        assert none.status_code == 401, path
        assert as_app.status_code == 403, path
    stored = await gateway.conns.store.get_app(app.app_id)
    assert stored is not None
    assert not stored.disabled


async def test_the_admin_reads_any_jobs_timeline_and_apps_only_their_own(
    gateway: Gateway,
) -> None:
    owner, other = await gateway.register_app(), await gateway.register_app()
    [job] = await _jobs(gateway, owner, 1)
    await gateway.dispatch(job.job_id, 1)

    admin_view = await gateway.http.get(f"/v1/admin/jobs/{job.job_id}", headers=ADMIN)
    status_as_admin = await gateway.http.get(f"/v1/jobs/{job.job_id}", headers=ADMIN)
    as_owner = await gateway.http.get(f"/v1/jobs/{job.job_id}", headers=owner.headers)
    as_other = await gateway.http.get(f"/v1/jobs/{job.job_id}", headers=other.headers)
    missing = await gateway.http.get("/v1/admin/jobs/no-such-job", headers=ADMIN)

    assert admin_view.status_code == status_as_admin.status_code == as_owner.status_code == 200
    assert status_as_admin.json() == as_owner.json()
    body = admin_view.json()
    # The admin view is the status and more.
    assert {k: v for k, v in body.items() if k in as_owner.json()} == as_owner.json()
    assert body["status"] == "running"
    assert [a["attempt"] for a in body["attempts"]] == [1]
    assert body["attempts"][0]["dispatched_at"] and body["attempts"][0]["accepted_at"]
    assert body["payload"] == {"photo": "p1.jpg"}
    assert body["trace_id"] == job.trace_id
    assert body["notifications"] == []
    assert body["user_mails"] == {}
    assert as_other.status_code == 404
    assert missing.status_code == 404
    assert missing.json() == {"detail": "no job 'no-such-job'"}


async def test_the_admin_view_shows_the_mails_and_alerts_of_a_job(gateway: Gateway) -> None:
    app = await gateway.register_app()
    [job] = await _jobs(gateway, app, 1)
    store = gateway.conns.store
    stale = utcnow() - timedelta(minutes=5)
    key = f"{job.job_id}:dead:ops@example.com"
    claim = await store.claim_notification(
        key,
        job_id=job.job_id,
        recipient="ops@example.com",
        kind="dead",
        claim_id="c1",
        message_id="<m1@jobplane>",
        stale_before=stale,
    )
    assert claim is MailClaim.CLAIMED
    assert await store.settle_notification(key, MailState.SENT, claim_id="c1")
    await store.claim_user_mail(
        job.job_id, "dead", claim_id="c2", message_id="<m2@jobplane>", stale_before=stale
    )

    body = (await gateway.http.get(f"/v1/admin/jobs/{job.job_id}", headers=ADMIN)).json()

    [alert] = body["notifications"]
    assert (alert["recipient"], alert["kind"], alert["state"]) == (
        "ops@example.com",
        "dead",
        "sent",
    )
    assert alert["sent_at"] and alert["claimed_at"]
    assert body["user_mails"] == {"dead": "claimed"}
    # The user-mail claim took the owed announcement (what the relay would re-publish).
    assert body["announce_due_at"] is None


async def test_apps_and_users_are_listed_without_keys(gateway: Gateway) -> None:
    apps = [await gateway.register_app(admin_emails=["ops@example.com"]) for _ in range(3)]
    users = sorted([await gateway.register_user(apps[0]) for _ in range(3)])

    listed: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = (await gateway.http.get("/v1/admin/apps", params=params, headers=ADMIN)).json()
        listed += body["apps"]
        if (cursor := body["next_cursor"]) is None:
            break
    response = await gateway.http.get(
        f"/v1/admin/apps/{apps[0].app_id}/users", params={"limit": 2}, headers=ADMIN
    )
    rest = await gateway.http.get(
        f"/v1/admin/apps/{apps[0].app_id}/users",
        params={"cursor": response.json()["next_cursor"]},
        headers=ADMIN,
    )
    unknown = await gateway.http.get("/v1/admin/apps/nope/users", headers=ADMIN)

    assert [a["app_id"] for a in listed] == sorted(a.app_id for a in apps)
    assert listed[0]["admin_emails"] == ["ops@example.com"]
    assert listed[0]["disabled"] is False
    text = str(listed)
    for app in apps:
        assert app.api_key not in text
        assert app.api_key.split(".")[-1] not in text
    assert "hash" not in text
    page = response.json()["users"] + rest.json()["users"]
    assert [u["user_id"] for u in page] == users
    assert page[0] == {"user_id": users[0], "email": f"{users[0]}@example.com", "language": "en"}
    assert rest.json()["next_cursor"] is None
    assert unknown.status_code == 404


async def test_an_update_changes_the_app_and_only_what_it_names(gateway: Gateway) -> None:
    app = await gateway.register_app(default_timeout_seconds=60)
    change = {
        "backend_url": "http://new-backend.test:9001/run",
        "max_concurrency": 4,
        "admin_emails": ["a@example.com", "b@example.com"],
    }

    response = await gateway.http.patch(f"/v1/admin/apps/{app.app_id}", json=change, headers=ADMIN)

    assert response.status_code == 200, response.text
    body = response.json()
    assert {k: body[k] for k in change} == change
    assert body["default_timeout_seconds"] == 60
    assert body["updated_at"]
    stored = await gateway.conns.store.get_app(app.app_id)
    assert stored is not None
    assert (stored.backend_url, stored.max_concurrency) == (change["backend_url"], 4)
    assert stored.admin_emails == change["admin_emails"]
    assert stored.default_timeout_seconds == 60
    # The key still works: an update never touches it.
    user_id = await gateway.register_user(app)
    assert (await gateway.submit(app, user_id)).status_code == 202


async def test_invalid_updates_change_nothing(gateway: Gateway) -> None:
    app = await gateway.register_app()
    before = await gateway.conns.store.get_app(app.app_id)
    for body in (
        {},
        {"backend_url": None},
        {"backend_url": "not a url"},
        {"default_timeout_seconds": 0},
        {"default_timeout_seconds": 86_401},
        {"max_concurrency": 10_001},
        {"admin_emails": ["nobody"]},
        {"disabled": "maybe"},
        {"api_key_hash": "x"},
    ):
        response = await gateway.http.patch(
            f"/v1/admin/apps/{app.app_id}", json=body, headers=ADMIN
        )
        assert response.status_code == 422, body
    missing = await gateway.http.patch(
        "/v1/admin/apps/no-such-app", json={"disabled": True}, headers=ADMIN
    )
    assert missing.status_code == 404
    assert await gateway.conns.store.get_app(app.app_id) == before


async def test_a_disabled_app_cannot_submit_and_keeps_its_jobs(gateway: Gateway) -> None:
    app = await gateway.register_app()
    [queued] = await _jobs(gateway, app, 1)
    user_id = await gateway.register_user(app)

    disabled = await gateway.http.patch(
        f"/v1/admin/apps/{app.app_id}", json={"disabled": True}, headers=ADMIN
    )
    refused = await gateway.submit(app, user_id)

    assert disabled.status_code == 200
    assert disabled.json()["disabled"] is True
    assert refused.status_code == 403
    assert refused.json() == {
        "detail": (
            f"app '{app.app_id}' is disabled: it cannot submit jobs until an administrator "
            "enables it again"
        )
    }
    kept = await gateway.http.get(f"/v1/jobs/{queued.job_id}", headers=app.headers)
    assert kept.status_code == 200
    assert kept.json()["status"] == "queued"
    listed = await _all_pages(gateway, limit=10, app_id=app.app_id)
    assert [j["job_id"] for j in listed] == [queued.job_id]

    enabled = await gateway.http.patch(
        f"/v1/admin/apps/{app.app_id}", json={"disabled": False}, headers=ADMIN
    )
    assert enabled.json()["disabled"] is False
    assert (await gateway.submit(app, user_id)).status_code == 202


async def test_stats_count_jobs_by_status_and_by_app(gateway: Gateway) -> None:
    photos, videos = await gateway.register_app(), await gateway.register_app()
    p1, p2, _ = await _jobs(gateway, photos, 3)
    v1, _ = await _jobs(gateway, videos, 2)
    await _set(gateway, p1, status="dead")
    await _set(gateway, p2, status="succeeded")
    await _set(gateway, v1, status="dead")

    response = await gateway.http.get("/v1/admin/stats", headers=ADMIN)

    assert response.status_code == 200, response.text
    body = response.json()
    zero = {s: 0 for s in body["by_status"]}
    assert body["total"] == 5
    assert body["by_status"] == {**zero, "queued": 2, "dead": 2, "succeeded": 1}
    assert body["by_app"] == {
        photos.app_id: {**zero, "queued": 1, "dead": 1, "succeeded": 1},
        videos.app_id: {**zero, "queued": 1, "dead": 1},
    }
    assert set(zero) == {
        "queued",
        "dispatched",
        "running",
        "retry_scheduled",
        "succeeded",
        "dead",
        "cancelled",
    }
