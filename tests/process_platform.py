"""The real platform as processes, for the tests that drive it from outside (a browser, the
`jobplane` CLI): the four services started from their console scripts, as `make up` does,
against the test servers (`infra`), on free ports, with their own database, topic prefix and
log directory (`.local/tests/<name>/`), plus the demo backend, started when a test wants it.

The app registered by `register_app` points at the demo backend's port before the demo runs:
its jobs find the backend unreachable, are retried after short delays and end dead, which
is how the tests make a dead letter; starting the demo then is the backend coming back, and
a redrive makes the job succeed.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from jobplane.topics import delete_topics
from jobplane_local import LocalConfig
from jobplane_local.paths import default_local_dir
from jobplane_local.platform import PlatformProcess
from jobplane_local.testing import Infra
from pymongo import MongoClient

from tests.support import free_port

ADMIN_KEY = "console-test-admin-key"
RETRY_DELAYS = [0.2, 0.2, 0.2, 0.2, 0.2]
SERVICES = ("gateway", "dispatcher", "retry", "notifier")
THUMBNAIL = {"width": 64, "height": 48, "color": "teal", "size": [32, 24]}


def _log(message: str) -> None:
    print(f"[platform {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def wait_for(check: Callable[[], Any], timeout: float, describe: Callable[[], str]) -> Any:
    """``check()``'s first truthy value, polled every 0.2 s; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(describe())
        time.sleep(0.2)


@dataclass
class App:
    app_id: str
    api_key: str
    user_id: str


@dataclass
class ProcessPlatform:
    name: str
    infra: Infra
    gateway_port: int = field(default_factory=free_port)
    demo_port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.config = LocalConfig(local_dir=default_local_dir() / "tests" / self.name)
        self.processes = {
            name: PlatformProcess(
                self.config,
                name,
                self.environment(name),
                self.gateway_port if name == "gateway" else None,
            )
            for name in SERVICES
        }
        self.demo = PlatformProcess(
            self.config,
            "demo",
            {
                "DEMO_HOST": "127.0.0.1",
                "DEMO_PORT": str(self.demo_port),
                "DEMO_OUTPUT_DIR": str(self.config.local_dir / "demo" / "thumbnails"),
            },
            self.demo_port,
        )
        self.http = httpx.Client(base_url=self.gateway_url, timeout=10)

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def database(self) -> str:
        return f"console_{self.name.replace('-', '_')}"

    @property
    def topic_prefix(self) -> str:
        return f"{self.name}."

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_KEY}"}

    def environment(self, service: str) -> dict[str, str]:
        common = {
            "KAFKA_BOOTSTRAP_SERVERS": self.infra.kafka_bootstrap,
            "MONGODB_URI": self.infra.mongodb_uri,
            "MONGODB_DATABASE": self.database,
            "TOPIC_PREFIX": self.topic_prefix,
            "TOPIC_PARTITIONS": "1",
            "LOG_LEVEL": "INFO",
        }
        own = {
            "gateway": {
                "ADMIN_API_KEY": ADMIN_KEY,
                "HOST": "127.0.0.1",
                "PORT": str(self.gateway_port),
                "PUBLIC_URL": self.gateway_url,
            },
            "dispatcher": {
                "GROUP_ID": f"{self.name}.dispatcher",
                "GATEWAY_PUBLIC_URL": self.gateway_url,
            },
            "retry": {
                "ROUTER_GROUP_ID": f"{self.name}.retry-router",
                "TIERS_GROUP_ID": f"{self.name}.retry-tiers",
                "RETRY_DELAYS_SECONDS": json.dumps(RETRY_DELAYS),
            },
            "notifier": {
                "GROUP_ID": f"{self.name}.notifier",
                "SMTP_HOST": self.infra.smtp_host,
                "SMTP_PORT": str(self.infra.smtp_port),
                "ADMIN_EMAILS": json.dumps([f"ops@{self.name}.example"]),
            },
        }[service]
        return {**common, **own}

    def start(self) -> None:
        with ThreadPoolExecutor(max_workers=len(SERVICES)) as pool:
            for started in [pool.submit(p.start, _log) for p in self.processes.values()]:
                started.result()

    def stop(self) -> None:
        for process in [self.demo, *self.processes.values()]:
            process.stop(_log)
        self.http.close()

    # -- the API, as an app and as the administrators ---------------------------------------

    def register_app(self) -> App:
        """An app whose backend is the demo's port (unreachable until `demo.start`), and one
        user of it."""
        app_id = f"app-{uuid.uuid4().hex[:8]}"
        created = self.http.post(
            "/v1/apps",
            json={
                "app_id": app_id,
                "backend_url": f"http://127.0.0.1:{self.demo_port}/jobs",
                "default_timeout_seconds": 30,
                "admin_emails": [f"admin@{app_id}.example"],
            },
            headers=self.admin_headers,
        )
        assert created.status_code == 201, created.text
        api_key = created.json()["api_key"]
        user = self.http.put(
            "/v1/users/alice",
            json={"email": f"alice@{app_id}.example"},
            headers={"Authorization": f"Bearer {api_key}"},
        )
        assert user.status_code in (200, 201), user.text
        return App(app_id, api_key, "alice")

    def submit(self, app: App) -> str:
        answer = self.http.post(
            "/v1/jobs",
            json={"user_id": app.user_id, "job_type": "thumbnail", "payload": THUMBNAIL},
            headers={"Authorization": f"Bearer {app.api_key}"},
        )
        assert answer.status_code == 202, answer.text
        job_id: str = answer.json()["job_id"]
        return job_id

    def job(self, job_id: str) -> dict[str, Any]:
        answer = self.http.get(f"/v1/admin/jobs/{job_id}", headers=self.admin_headers)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def wait_for_status(self, job_id: str, wanted: str, timeout: float = 60) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        def check() -> bool:
            nonlocal seen
            seen = self.job(job_id)
            return bool(seen["status"] == wanted)

        wait_for(check, timeout, lambda: f"job {job_id} never {wanted}: {seen}")
        return seen

    def dead_job(self, app: App) -> str:
        """A job that died: its backend was unreachable at every attempt."""
        job_id = self.submit(app)
        self.wait_for_status(job_id, "dead")
        return job_id


@contextmanager
def running_platform(infra: Infra, name: str) -> Iterator[ProcessPlatform]:
    """The four services as processes for the block; everything they made is removed after."""
    platform = ProcessPlatform(f"{name}-{uuid.uuid4().hex[:6]}", infra)
    try:
        platform.start()
        yield platform
    finally:
        platform.stop()
        client: MongoClient[dict[str, Any]] = MongoClient(infra.mongodb_uri)
        try:
            client.drop_database(platform.database)
        finally:
            client.close()
        asyncio.run(delete_topics(infra.kafka_bootstrap, platform.topic_prefix))
        shutil.rmtree(platform.config.local_dir, ignore_errors=True)
