"""Apps' outcome webhooks end to end: the real services, Kafka, store and SMTP sink, and a
real HTTP receiver playing the app's endpoint."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from jobplane_client.webhooks import (
    ATTEMPT_HEADER,
    DELIVERY_ID_HEADER,
    SIGNATURE_HEADER,
    WebhookSignatureError,
    verify,
)
from jobplane_gateway.backend_contract import OutcomeEvent

from tests.e2e.conftest import AppHandle, Platform, start_platform
from tests.notifier.smtp_server import SmtpUnderTest, smtp_server
from tests.support import serve_http

# Fast retries so that the suite sees every state of a delivery within seconds.
WEBHOOK_SETTINGS: dict[str, Any] = {
    "webhook_retry_base_seconds": 1.0,
    "webhook_retry_max_seconds": 2.0,
    "webhook_max_attempts": 3,
    "webhook_timeout_seconds": 2.0,
}


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float

    def json(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.body)
        return value


@dataclass
class Receiver:
    """The app's webhook endpoint. ``/ok`` answers 200; ``/flaky-<n>`` answers 500 to the
    first ``n`` POSTs of each delivery, then 200; ``/down`` always 503; ``/hang`` answers
    after the notifier's timeout."""

    url: str = ""
    deliveries: list[Delivery] = field(default_factory=list)

    def to(self, path: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.path == path]

    def app(self) -> FastAPI:
        api = FastAPI()

        @api.post("/{path}")
        async def receive(path: str, request: Request) -> JSONResponse:
            delivery = Delivery(path, dict(request.headers), await request.body(), time.time())
            self.deliveries.append(delivery)
            if path == "down":
                return JSONResponse({"error": "maintenance"}, status_code=503)
            if path == "hang":
                await asyncio.sleep(WEBHOOK_SETTINGS["webhook_timeout_seconds"] + 1)
            if path.startswith("flaky-"):
                seen = [
                    d
                    for d in self.to(path)
                    if d.headers[DELIVERY_ID_HEADER.lower()]
                    == delivery.headers[DELIVERY_ID_HEADER.lower()]
                ]
                if len(seen) <= int(path.removeprefix("flaky-")):
                    return JSONResponse({"error": "try later"}, status_code=500)
            return JSONResponse({"ok": True})

        return api


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[Receiver]:
    receiving = Receiver()
    async with serve_http(receiving.app()) as url:
        receiving.url = url
        yield receiving


@pytest.fixture(scope="module")
async def smtp(infra: Any) -> AsyncIterator[SmtpUnderTest]:
    """An SMTP server whose answers a test chooses, writing to the sink's mailbox."""
    async with smtp_server(infra.mail_dir) as server:
        yield server


@pytest.fixture(scope="module")
async def platform(infra: Any, smtp: SmtpUnderTest) -> AsyncIterator[Platform]:
    notifier = {**WEBHOOK_SETTINGS, "smtp_host": "127.0.0.1", "smtp_port": smtp.port}
    async with start_platform(
        infra, gateway={"relay_interval_seconds": 0.2}, notifier=notifier
    ) as running:
        yield running


async def app_with_webhook(platform: Platform, receiver: Receiver, path: str) -> AppHandle:
    app = await platform.register_app(webhook_url=f"{receiver.url}/{path}")
    assert app.webhook_secret is not None and app.webhook_secret.startswith("whsec_")
    return app


async def webhook_state(
    platform: Platform, app: AppHandle, job_id: str, state: str, timeout: float = 30
) -> dict[str, Any]:
    status = await platform.wait_until(
        app,
        job_id,
        lambda s: s["webhook"] is not None and s["webhook"]["state"] == state,
        timeout=timeout,
    )
    webhook: dict[str, Any] = status["webhook"]
    return webhook


async def test_success_is_posted_once_and_signed(platform: Platform, receiver: Receiver) -> None:
    app = await app_with_webhook(platform, receiver, "ok")
    user_id, _ = await platform.register_user(app)

    job_id = await platform.submit(app, user_id, {"behaviour": "succeed"})
    webhook = await webhook_state(platform, app, job_id, "sent")

    assert webhook["attempts"] == 1 and webhook["last_error"] is None
    [delivery] = [d for d in receiver.to("ok") if d.json()["job"]["job_id"] == job_id]
    assert app.webhook_secret is not None
    verify(app.webhook_secret, delivery.body, delivery.headers[SIGNATURE_HEADER.lower()])
    with pytest.raises(WebhookSignatureError):
        verify(app.webhook_secret, delivery.body + b" ", delivery.headers["jobplane-signature"])
    body = delivery.json()
    OutcomeEvent.model_validate(body)  # as the OpenAPI document describes it
    assert body["id"] == f"{job_id}:succeeded"
    assert body["type"] == "job.succeeded"
    assert body["job"]["result"] == {"thumbnail": f"{job_id}.png"}
    assert body["job"]["app_id"] == app.app_id and body["job"]["user_id"] == user_id
    assert delivery.headers[DELIVERY_ID_HEADER.lower()] == f"{job_id}:succeeded"
    assert delivery.headers[ATTEMPT_HEADER.lower()] == "1"
    # Duplicate events (the relay, a replay) post nothing more.
    await asyncio.sleep(1.5)
    assert len([d for d in receiver.to("ok") if d.json()["job"]["job_id"] == job_id]) == 1


async def test_dead_job_is_posted(platform: Platform, receiver: Receiver) -> None:
    app = await app_with_webhook(platform, receiver, "ok")
    user_id, email = await platform.register_user(app)

    job_id = await platform.submit(app, user_id, {"behaviour": "permanent"})
    await webhook_state(platform, app, job_id, "sent")

    [delivery] = [d for d in receiver.to("ok") if d.json()["job"]["job_id"] == job_id]
    body = delivery.json()
    OutcomeEvent.model_validate(body)
    assert body["type"] == "job.dead"
    assert body["job"]["status"] == "dead"
    assert "the video is corrupt" in body["job"]["error"]["message"]
    await platform.wait_for_mails(email, 1)  # the user's mail goes out all the same


async def test_failing_endpoint_is_retried_with_backoff(
    platform: Platform, receiver: Receiver
) -> None:
    app = await app_with_webhook(platform, receiver, "flaky-2")
    user_id, email = await platform.register_user(app)

    job_id = await platform.submit(app, user_id, {"behaviour": "succeed"})
    retrying = await webhook_state(platform, app, job_id, "retrying")
    assert retrying["last_error"].startswith("HTTP 500")
    assert retrying["next_attempt_at"] is not None
    sent = await webhook_state(platform, app, job_id, "sent")

    assert sent["attempts"] == 3
    tries = [d for d in receiver.to("flaky-2") if d.json()["job"]["job_id"] == job_id]
    assert [d.headers[ATTEMPT_HEADER.lower()] for d in tries] == ["1", "2", "3"]
    assert {d.headers[DELIVERY_ID_HEADER.lower()] for d in tries} == {f"{job_id}:succeeded"}
    gaps = [later.received_at - earlier.received_at for earlier, later in itertools.pairwise(tries)]
    # Base 1 s, doubling, ±10 %: never before the backoff.
    assert gaps[0] >= 0.9 and gaps[1] >= 1.8, gaps
    # The user was mailed once, whatever the webhook's retries re-announced.
    await asyncio.sleep(1)
    assert len(await platform.wait_for_mails(email, 1)) == 1


async def test_a_mail_refused_for_good_does_not_stop_the_webhook(
    platform: Platform, receiver: Receiver, smtp: SmtpUnderTest
) -> None:
    app = await app_with_webhook(platform, receiver, "ok")
    user_id, email = await platform.register_user(app)
    smtp.rules.refuse.add(email)

    job_id = await platform.submit(app, user_id, {"behaviour": "succeed"})

    await webhook_state(platform, app, job_id, "sent")
    assert platform.mails_to(email) == []


async def test_the_webhook_waits_for_the_mail_and_keeps_its_retry(
    platform: Platform, receiver: Receiver, smtp: SmtpUnderTest
) -> None:
    app = await app_with_webhook(platform, receiver, "flaky-1")
    user_id, email = await platform.register_user(app)
    smtp.rules.busy[email] = 2  # the mail goes out on the third try

    job_id = await platform.submit(app, user_id, {"behaviour": "succeed"})

    sent = await webhook_state(platform, app, job_id, "sent")
    assert sent["attempts"] == 2
    assert len(await platform.wait_for_mails(email, 1)) == 1


async def test_endpoint_down_fails_for_good_without_holding_others(
    platform: Platform, receiver: Receiver
) -> None:
    down = await app_with_webhook(platform, receiver, "down")
    healthy = await app_with_webhook(platform, receiver, "ok")
    down_user, _ = await platform.register_user(down)
    healthy_user, _ = await platform.register_user(healthy)

    down_job = await platform.submit(down, down_user, {"behaviour": "succeed"})
    await webhook_state(platform, down, down_job, "retrying")
    # While the first endpoint fails, other outcomes are delivered at once.
    healthy_job = await platform.submit(healthy, healthy_user, {"behaviour": "succeed"})
    await webhook_state(platform, healthy, healthy_job, "sent", timeout=10)

    failed = await webhook_state(platform, down, down_job, "failed")
    assert failed["attempts"] == 3
    assert failed["last_error"].startswith("HTTP 503")
    assert len([d for d in receiver.to("down") if d.json()["job"]["job_id"] == down_job]) == 3


async def test_an_unreachable_endpoint_puts_the_apps_next_deliveries_off(
    platform: Platform, receiver: Receiver
) -> None:
    app = await app_with_webhook(platform, receiver, "hang")
    user_id, _ = await platform.register_user(app)
    first = await platform.submit(app, user_id, {"behaviour": "succeed"})
    timed_out = await webhook_state(platform, app, first, "retrying")
    assert timed_out["last_error"] == "no answer within 2 s"

    # Right after, the app's next outcome does not take a handler for the whole timeout:
    # it is put off untried, its attempts not counted.
    second = await platform.submit(app, user_id, {"behaviour": "succeed"})
    put_off = await webhook_state(platform, app, second, "retrying")
    assert put_off["attempts"] == 0, put_off
    assert put_off["last_error"].startswith("not tried")


async def test_webhook_url_set_and_removed_by_the_admin(
    platform: Platform, receiver: Receiver
) -> None:
    app = await platform.register_app()
    assert app.webhook_secret is None
    admin = {"Authorization": "Bearer e2e-admin-key"}

    response = await platform.http.patch(
        f"/v1/admin/apps/{app.app_id}", json={"webhook_url": f"{receiver.url}/ok"}, headers=admin
    )
    assert response.status_code == 200, response.text
    first = response.json()["webhook_secret"]
    assert first.startswith("whsec_") and response.json()["webhook_url"] == f"{receiver.url}/ok"

    response = await platform.http.patch(
        f"/v1/admin/apps/{app.app_id}", json={"max_concurrency": 4}, headers=admin
    )
    assert response.json()["webhook_secret"] is None  # shown once only
    response = await platform.http.patch(
        f"/v1/admin/apps/{app.app_id}", json={"rotate_webhook_secret": True}, headers=admin
    )
    rotated = response.json()["webhook_secret"]
    assert rotated.startswith("whsec_") and rotated != first
    listed = await platform.http.get("/v1/admin/apps", headers=admin, params={"limit": 200})
    assert listed.status_code == 200 and app.app_id in listed.text
    assert rotated not in listed.text and first not in listed.text

    # For a while after a rotation, deliveries carry a signature with each secret.
    user_id, _ = await platform.register_user(app)
    job_id = await platform.submit(app, user_id, {"behaviour": "succeed"})
    await webhook_state(platform, app, job_id, "sent")
    [delivery] = [d for d in receiver.to("ok") if d.json()["job"]["job_id"] == job_id]
    for secret in (first, rotated):
        verify(secret, delivery.body, delivery.headers["jobplane-signature"])
    with pytest.raises(WebhookSignatureError):
        verify("whsec_other", delivery.body, delivery.headers["jobplane-signature"])

    response = await platform.http.patch(
        f"/v1/admin/apps/{app.app_id}", json={"webhook_url": None}, headers=admin
    )
    assert response.status_code == 200 and response.json()["webhook_url"] is None
    # (The notifiers see it within their app cache's 10 s.)
