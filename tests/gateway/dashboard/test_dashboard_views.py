"""The dashboard's pages over the real store and Kafka, in process (the browser test runs the
same pages in Chromium against the platform as processes): who may see them, what the
buttons do, and that every asset is the gateway's own."""

from __future__ import annotations

from jobplane.events import Failure, FailureKind
from jobplane.jobs import Job, JobStatus

from tests.gateway.harness import ADMIN, ADMIN_KEY, Gateway, RegisteredApp

HTMX = {"HX-Request": "true"}


async def _dead_job(gateway: Gateway, app: RegisteredApp) -> Job:
    job = await gateway.submitted_job(app)
    await gateway.dispatch(job.job_id, 1)
    failure = Failure(kind=FailureKind.REPORTED, message="the video is corrupt", retryable=False)
    dead = await gateway.conns.store.mark_dead(job.job_id, 1, failure)
    assert dead is not None
    return dead


async def _login(gateway: Gateway) -> None:
    response = await gateway.http.post(
        "/dashboard/login",
        content=f"admin_key={ADMIN_KEY}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/dashboard"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie


async def test_without_the_admin_key_every_page_sends_to_the_login(gateway: Gateway) -> None:
    app = await gateway.register_app()
    for path in ("/dashboard", "/dashboard/jobs", "/dashboard/dead", "/dashboard/apps"):
        response = await gateway.http.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"] == "/dashboard/login"
        as_app = await gateway.http.get(path, headers=app.headers)
        assert as_app.status_code == 303, path
    # htmx follows HX-Redirect: a poll after the session expired goes to the login page.
    polled = await gateway.http.get("/dashboard/parts/counts", headers=HTMX)
    assert polled.headers["hx-redirect"] == "/dashboard/login"
    clicked = await gateway.http.post("/dashboard/jobs/0123456789abcdef/redrive")
    assert clicked.status_code == 303
    refused = await gateway.http.post(
        "/dashboard/login",
        content="admin_key=guess",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert refused.status_code == 401
    assert "not the admin key" in refused.text


async def test_a_login_gives_a_session_and_the_pages_show_the_jobs(gateway: Gateway) -> None:
    app = await gateway.register_app()
    dead = await _dead_job(gateway, app)
    queued = await gateway.submitted_job(app)
    await _login(gateway)

    overview = await gateway.http.get("/dashboard")
    assert overview.status_code == 200
    assert app.app_id in overview.text
    assert 'hx-trigger="every 2s"' in overview.text
    dead_letters = await gateway.http.get("/dashboard/dead", params={"app_id": app.app_id})
    assert f'id="job-{dead.job_id}"' in dead_letters.text
    assert f'id="job-{queued.job_id}"' not in dead_letters.text
    assert "the video is corrupt" in dead_letters.text
    # The form's blank "any" filters nothing.
    listed = await gateway.http.get(
        "/dashboard/jobs", params={"status": "", "app_id": app.app_id, "failure_kind": ""}
    )
    assert queued.job_id in listed.text
    assert dead.job_id in listed.text
    nobody = await gateway.http.get("/dashboard/jobs", params={"app_id": "No Such_App!"})
    assert nobody.status_code == 200
    assert "No jobs here." in nobody.text
    timeline = await gateway.http.get(f"/dashboard/jobs/{dead.job_id}")
    assert "Attempt 1" in timeline.text
    assert 'id="redrive"' in timeline.text
    apps = await gateway.http.get("/dashboard/apps")
    assert app.app_id in apps.text


async def test_the_buttons_redrive_a_dead_job_once_and_cancel_a_queued_one(
    gateway: Gateway,
) -> None:
    app = await gateway.register_app()
    dead = await _dead_job(gateway, app)
    queued = await gateway.submitted_job(app)

    redriven = await gateway.http.post(
        f"/dashboard/jobs/{dead.job_id}/redrive", headers={**ADMIN, **HTMX}
    )
    assert redriven.status_code == 200
    assert "Redriven: the job is queued again." in redriven.text
    assert "<html" not in redriven.text  # htmx gets the panel only
    job = await gateway.conns.store.get_job(dead.job_id)
    assert job is not None
    assert job.status is JobStatus.QUEUED
    assert [r.by for r in job.redrives] == ["admin"]
    # The timeline marks where the new run starts.
    await gateway.dispatch(dead.job_id, job.attempt)
    timeline = await gateway.http.get(f"/dashboard/jobs/{dead.job_id}", headers=ADMIN)
    assert timeline.text.index("Attempt 1") < timeline.text.index("a new run starts")
    assert timeline.text.index("a new run starts") < timeline.text.index(f"Attempt {job.attempt}")
    again = await gateway.http.post(f"/dashboard/jobs/{dead.job_id}/redrive", headers=ADMIN)
    assert "Not redriven: not dead (running)." in again.text
    assert "<html" in again.text  # a plain form post gets the whole page

    cancelled = await gateway.http.post(
        f"/dashboard/jobs/{queued.job_id}/cancel", headers={**ADMIN, **HTMX}
    )
    assert "Cancelled: the job will not run again." in cancelled.text
    refused = await gateway.http.post(
        f"/dashboard/jobs/{queued.job_id}/cancel", headers={**ADMIN, **HTMX}
    )
    assert "Not cancelled: the job is cancelled already." in refused.text


async def test_the_dead_letters_of_a_filter_are_listed_then_redriven(gateway: Gateway) -> None:
    app = await gateway.register_app()
    first, second = await _dead_job(gateway, app), await _dead_job(gateway, app)
    form = {"Content-Type": "application/x-www-form-urlencoded", **ADMIN}
    body = f"app_id={app.app_id}&failure_kind=reported&dry_run="
    dry = await gateway.http.post("/dashboard/dead/redrive", content=body + "true", headers=form)
    assert "2 matched; would redrive 2" in dry.text
    assert (await gateway.conns.store.get_job(first.job_id)).status is JobStatus.DEAD  # type: ignore[union-attr]
    done = await gateway.http.post("/dashboard/dead/redrive", content=body + "false", headers=form)
    assert "2 matched; redriven 2" in done.text
    for job in (first, second):
        assert (await gateway.conns.store.get_job(job.job_id)).status is JobStatus.QUEUED  # type: ignore[union-attr]
    bad = await gateway.http.post(
        "/dashboard/dead/redrive", content="failure_kind=boredom&dry_run=true", headers=form
    )
    assert "Redrive refused" in bad.text


async def test_every_asset_is_served_by_the_gateway(gateway: Gateway) -> None:
    page = await gateway.http.get("/dashboard/login")
    assert 'src="/dashboard/static/htmx.min.js"' in page.text
    assert "http://" not in page.text and "https://" not in page.text
    htmx = await gateway.http.get("/dashboard/static/htmx.min.js")
    assert htmx.status_code == 200
    assert "htmx" in htmx.text[:2000]
    css = await gateway.http.get("/dashboard/static/dashboard.css")
    assert css.status_code == 200
    licence = await gateway.http.get("/dashboard/static/htmx.LICENSE")
    assert "Zero-Clause BSD" in licence.text


async def test_an_app_is_disabled_and_enabled_from_the_apps_page(gateway: Gateway) -> None:
    app = await gateway.register_app()
    form = {"Content-Type": "application/x-www-form-urlencoded", **ADMIN, **HTMX}
    off = await gateway.http.post(
        f"/dashboard/apps/{app.app_id}/disabled", content="disabled=true", headers=form
    )
    assert off.status_code == 200
    assert "disabled</span>" in off.text
    assert ">Enable</button>" in off.text
    stored = await gateway.conns.store.get_app(app.app_id)
    assert stored is not None
    assert stored.disabled
    on = await gateway.http.post(
        f"/dashboard/apps/{app.app_id}/disabled", content="disabled=false", headers=form
    )
    assert ">Disable</button>" in on.text
    stored = await gateway.conns.store.get_app(app.app_id)
    assert stored is not None
    assert not stored.disabled
    missing = await gateway.http.post(
        "/dashboard/apps/no-such-app/disabled", content="disabled=true", headers=form
    )
    assert missing.status_code == 404
