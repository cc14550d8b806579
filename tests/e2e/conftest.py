"""The whole platform in one process: the four services, each as it runs in production
(its own settings, its own Kafka consumer group), against the real local Kafka, document
store and SMTP sink, plus a real HTTP app backend.

One platform per test module (starting consumer groups costs seconds); each test registers
its own app and users, so tests never read each other's jobs or e-mails.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from jobplane.config import CommonSettings
from jobplane.events import E
from jobplane.topics import Topics
from jobplane_dispatcher.config import Settings as DispatcherSettings
from jobplane_dispatcher.main import serve as serve_dispatcher
from jobplane_gateway.config import Settings as GatewaySettings
from jobplane_gateway.main import serve as serve_gateway
from jobplane_local.mailbox import ReceivedMail, read_mailbox
from jobplane_notifier.config import Settings as NotifierSettings
from jobplane_notifier.main import serve as serve_notifier
from jobplane_retry.config import Settings as RetrySettings
from jobplane_retry.main import serve as serve_retry
from pydantic import SecretStr

from tests.e2e.backend import TestBackend, serve_in_background
from tests.e2e.kafka_io import PARTITIONS
from tests.support import eventually, free_port, read_events

ADMIN_KEY = "e2e-admin-key"
PLATFORM_ADMIN = "ops@jobplane.example"
# Sub-second tiers keep the suite fast; the production defaults are minutes to an hour.
RETRY_DELAYS = [0.3, 0.4, 0.5, 0.6, 0.7]


@dataclass(frozen=True)
class AppHandle:
    app_id: str
    api_key: str
    admin_email: str
    webhook_secret: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


@dataclass
class Platform:
    http: httpx.AsyncClient
    backend: TestBackend
    topics: Topics
    kafka_bootstrap: str
    mail_dir: Any

    async def register_app(
        self,
        *,
        backend_url: str | None = None,
        default_timeout_seconds: int = 60,
        webhook_url: str | None = None,
    ) -> AppHandle:
        app_id = f"app-{uuid.uuid4().hex[:10]}"
        admin_email = f"admin-{app_id}@example.com"
        response = await self.http.post(
            "/v1/apps",
            json={
                "app_id": app_id,
                "backend_url": backend_url or self.backend.url,
                "default_timeout_seconds": default_timeout_seconds,
                "admin_emails": [admin_email],
                **({"webhook_url": webhook_url} if webhook_url else {}),
            },
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )
        assert response.status_code == 201, response.text
        body = response.json()
        return AppHandle(app_id, body["api_key"], admin_email, body.get("webhook_secret"))

    async def register_user(self, app: AppHandle, language: str = "en") -> tuple[str, str]:
        user_id = f"user-{uuid.uuid4().hex[:8]}"
        email = f"{user_id}@{app.app_id}.example.com"
        response = await self.http.put(
            f"/v1/users/{user_id}", json={"email": email, "language": language}, headers=app.headers
        )
        assert response.status_code in (200, 201), response.text
        return user_id, email

    async def submit(
        self, app: AppHandle, user_id: str, payload: dict[str, Any], **headers: str
    ) -> str:
        response = await self.http.post(
            "/v1/jobs",
            json={"user_id": user_id, "job_type": "thumbnail", "payload": payload},
            headers={**app.headers, **headers},
        )
        assert response.status_code == 202, response.text
        job_id: str = response.json()["job_id"]
        return job_id

    async def status(self, app: AppHandle, job_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/v1/jobs/{job_id}", headers=app.headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def wait_until(
        self,
        app: AppHandle,
        job_id: str,
        done: Callable[[dict[str, Any]], bool],
        timeout: float = 30,
    ) -> dict[str, Any]:
        status: dict[str, Any] = {}

        async def check() -> bool:
            nonlocal status
            response = await self.http.get(f"/v1/jobs/{job_id}", headers=app.headers)
            if response.status_code == 404:
                return False  # produced to Kafka directly: stored when the dispatcher reads it
            assert response.status_code == 200, response.text
            status = response.json()
            return done(status)

        await eventually(check, timeout, lambda: f"job {job_id} never got there: {status}")
        return status

    async def events(self, topic: str, cls: type[E], job_id: str) -> list[E]:
        """Every event of ``job_id`` on ``topic`` so far."""
        settings = CommonSettings(
            kafka_bootstrap_servers=self.kafka_bootstrap, topic_partitions=PARTITIONS
        )
        return await read_events(settings, topic, cls, key=job_id)

    def mails_to(self, address: str) -> list[ReceivedMail]:
        return [m for m in read_mailbox(self.mail_dir) if address in m.rcpt_tos]

    async def wait_for_mails(
        self, address: str, count: int, timeout: float = 30
    ) -> list[ReceivedMail]:
        async def check() -> bool:
            return len(self.mails_to(address)) >= count

        await eventually(check, timeout, lambda: f"{address} got {self.mails_to(address)}")
        return self.mails_to(address)


@pytest.fixture(scope="module")
async def platform(infra: Any) -> AsyncIterator[Platform]:
    async with start_platform(infra) as running:
        yield running


@contextlib.asynccontextmanager
async def start_platform(
    infra: Any,
    *,
    gateway: dict[str, Any] | None = None,
    notifier: dict[str, Any] | None = None,
    results_link_secret: str | None = None,
) -> AsyncIterator[Platform]:
    """The four services and the test backend, with extra settings for the gateway and
    the notifier; with ``results_link_secret``, the mails link to the gateway's results
    pages."""
    prefix = f"e2e{uuid.uuid4().hex[:8]}."
    common: dict[str, Any] = {
        "kafka_bootstrap_servers": infra.kafka_bootstrap,
        "mongodb_uri": infra.mongodb_uri,
        "mongodb_database": prefix.rstrip(".").replace(".", "_"),
        "topic_prefix": prefix,
        "topic_partitions": PARTITIONS,
    }
    gateway_port = free_port()
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    backend = TestBackend()
    backend_port = free_port()
    backend.url = f"http://127.0.0.1:{backend_port}/jobs"
    backend_server, backend_task = await serve_in_background(backend.app(), backend_port)
    if results_link_secret is not None:
        secret = SecretStr(results_link_secret)
        gateway = {**(gateway or {}), "results_link_secret": secret}
        notifier = {
            **(notifier or {}),
            "results_link_secret": secret,
            "results_page_url": gateway_url,
        }

    services = [
        serve_gateway(
            GatewaySettings(
                **common,
                admin_api_key=SecretStr(ADMIN_KEY),
                host="127.0.0.1",
                port=gateway_port,
                public_url=gateway_url,
                **(gateway or {}),
            )
        ),
        serve_dispatcher(
            DispatcherSettings(
                **common,
                group_id=f"{prefix}dispatcher",
                gateway_public_url=gateway_url,
                deadline_check_interval_seconds=0.2,
            )
        ),
        serve_retry(
            RetrySettings(
                **common,
                router_group_id=f"{prefix}retry-router",
                tiers_group_id=f"{prefix}retry-tiers",
                retry_delays_seconds=RETRY_DELAYS,
            )
        ),
        serve_notifier(
            NotifierSettings(
                **{
                    **common,
                    "group_id": f"{prefix}notifier",
                    "smtp_host": infra.smtp_host,
                    "smtp_port": infra.smtp_port,
                    "admin_emails": [PLATFORM_ADMIN],
                    **(notifier or {}),
                }
            )
        ),
    ]
    tasks = [asyncio.create_task(service) for service in services]
    async with httpx.AsyncClient(base_url=gateway_url, timeout=10) as http:

        async def gateway_up() -> bool:
            for task in tasks:
                if task.done():
                    task.result()  # a service that died at start-up fails the fixture loudly
            try:
                return (await http.get("/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(gateway_up, 60, lambda: "the gateway did not come up")
        yield Platform(
            http=http,
            backend=backend,
            topics=Topics(prefix),
            kafka_bootstrap=infra.kafka_bootstrap,
            mail_dir=infra.mail_dir,
        )
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    backend_server.should_exit = True
    await backend_task
