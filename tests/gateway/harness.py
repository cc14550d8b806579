"""What the gateway's tests share: a client of the app under test and helpers that act as
the other services would (claiming attempts, reading events from Kafka)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from jobplane.connections import Connections
from jobplane.events import E
from jobplane.jobs import Job
from jobplane.security import hash_secret
from jobplane.store import utcnow
from jobplane_gateway.config import Settings
from jobplane_local.testing import Infra

from tests.support import read_events

ADMIN_KEY = "test-admin-key-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
BASE_URL = "http://gateway.test"


@dataclass(frozen=True)
class RegisteredApp:
    app_id: str
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


@dataclass
class Gateway:
    """The gateway under test, with what a test needs around it."""

    http: httpx.AsyncClient
    conns: Connections
    settings: Settings

    async def register_app(self, **fields: Any) -> RegisteredApp:
        body = {
            "app_id": f"app-{uuid.uuid4().hex[:10]}",
            "backend_url": "http://backend.test:9000/jobs",
            **fields,
        }
        response = await self.http.post("/v1/apps", json=body, headers=ADMIN)
        assert response.status_code == 201, response.text
        return RegisteredApp(body["app_id"], response.json()["api_key"])

    async def register_user(self, app: RegisteredApp, user_id: str | None = None) -> str:
        user_id = user_id or f"user-{uuid.uuid4().hex[:8]}"
        response = await self.http.put(
            f"/v1/users/{user_id}",
            json={"email": f"{user_id}@example.com", "language": "en"},
            headers=app.headers,
        )
        assert response.status_code == 201, response.text
        return user_id

    async def submit(
        self,
        app: RegisteredApp,
        user_id: str,
        *,
        payload: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        **fields: Any,
    ) -> httpx.Response:
        body = {
            "user_id": user_id,
            "job_type": "thumbnail",
            "payload": payload if payload is not None else {"photo": "p1.jpg"},
            **fields,
        }
        return await self.http.post(
            "/v1/jobs", json=body, headers={**app.headers, **(headers or {})}
        )

    async def submitted_job(self, app: RegisteredApp) -> Job:
        """A queued job of a new user of ``app``."""
        user_id = await self.register_user(app)
        response = await self.submit(app, user_id)
        assert response.status_code == 202, response.text
        job = await self.conns.store.get_job(response.json()["job_id"])
        assert job is not None
        return job

    async def dispatch(self, job_id: str, attempt: int, *, running: bool = True) -> str:
        """Claim ``attempt`` as the dispatcher does; returns its callback token."""
        token = f"token-{uuid.uuid4().hex}"
        claimed = await self.conns.store.claim_attempt(
            job_id,
            attempt,
            callback_token_hash=hash_secret(token),
            deadline_at=utcnow() + timedelta(hours=1),
        )
        assert claimed
        if running:
            assert await self.conns.store.mark_running(job_id, attempt)
        return token

    async def events(self, topic: str, cls: type[E], job_id: str) -> list[E]:
        """Every event of ``job_id`` on ``topic`` so far."""
        return await read_events(self.settings, topic, cls, key=job_id)

    async def wait_events(
        self, topic: str, cls: type[E], job_id: str, count: int = 1, timeout: float = 15
    ) -> list[E]:
        """At least ``count`` events of ``job_id`` on ``topic``, or what there is after
        ``timeout`` (a submit's event is published after the answer: the gateway does not
        wait for Kafka's ack; the wait also covers metadata propagation)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = await self.events(topic, cls, job_id)
            if len(found) >= count or loop.time() > deadline:
                return found
            await asyncio.sleep(0.2)


def make_settings(infra: Infra, topic_prefix: str, mongo_db_name: str, **fields: Any) -> Settings:
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": infra.kafka_bootstrap,
        "mongodb_uri": infra.mongodb_uri,
        "mongodb_database": mongo_db_name,
        "topic_prefix": topic_prefix,
        "topic_partitions": 1,
        "admin_api_key": ADMIN_KEY,
        "public_url": BASE_URL,
        **fields,
    }
    return Settings(**values)
