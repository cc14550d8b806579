"""The SDK's examples (libs/jobplane-client/examples) against the real platform: the
command-line ones run as the user would run them (a subprocess), the servers (backend,
webhook receiver) served as the user would serve them."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import uvicorn

from tests.e2e.conftest import AppHandle, Platform, start_platform
from tests.support import eventually, free_port, serve_http

EXAMPLES = Path(__file__).resolve().parents[2] / "libs" / "jobplane-client" / "examples"


def example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def run_example(script: str, *args: str, env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / script),
        *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode() + err.decode()


class Setup:
    """The platform, an app whose backend is the example backend and whose webhooks go to
    the example receiver."""

    def __init__(self, platform: Platform, app: AppHandle, receiver: Any, backend_url: str) -> None:
        self.platform = platform
        self.app = app
        self.receiver = receiver
        self.backend_url = backend_url

    @property
    def env(self) -> dict[str, str]:
        return {
            "JOBPLANE_URL": str(self.platform.http.base_url).rstrip("/"),
            "JOBPLANE_API_KEY": self.app.api_key,
            "KAFKA_BOOTSTRAP_SERVERS": self.platform.kafka_bootstrap,
            "TOPIC_PREFIX": self.platform.topics.prefix,
        }

    def outcomes(self, job_id: str) -> list[dict[str, Any]]:
        return [e for e in self.receiver.state.outcomes if e["job"]["job_id"] == job_id]


@pytest.fixture(scope="module")
async def setup(infra: Any) -> AsyncIterator[Setup]:
    async with start_platform(infra, gateway={"relay_interval_seconds": 0.5}) as platform:
        gateway_url = str(platform.http.base_url).rstrip("/")
        backend_port = free_port()
        # The receiver learns the secret at registration: it is served after it.
        receiver_holder: dict[str, Any] = {}
        async with serve_http(_late(receiver_holder)) as receiver_url:
            backend_url = f"http://127.0.0.1:{backend_port}/jobs"
            app = await platform.register_app(
                backend_url=backend_url,
                webhook_url=f"{receiver_url}/jobplane/outcomes",
            )
            assert app.webhook_secret is not None
            receiver = example("webhook_receiver").create_app(app.webhook_secret)
            receiver_holder["app"] = receiver
            backend = example("backend").create_app(gateway_url, app.webhook_secret)
            server = uvicorn.Server(
                uvicorn.Config(backend, port=backend_port, log_level="warning", lifespan="on")
            )
            task = asyncio.create_task(server.serve())
            await eventually(_started(server, task), 10, lambda: "the backend did not start")
            try:
                yield Setup(platform, app, receiver, backend_url)
            finally:
                server.should_exit = True
                await task


def _started(server: uvicorn.Server, task: asyncio.Task[None]) -> Callable[[], Awaitable[bool]]:
    async def started() -> bool:
        if task.done():
            task.result()
        return server.started

    return started


def _late(holder: dict[str, Any]) -> Any:
    """An ASGI app that forwards to ``holder["app"]`` once it is there."""

    async def forward(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            while message["type"] != "lifespan.shutdown":
                await send({"type": message["type"] + ".complete"})
                message = await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        await holder["app"](scope, receive, send)

    return forward


async def webhook_of(setup: Setup, job_id: str) -> dict[str, Any]:
    async def arrived() -> bool:
        return len(setup.outcomes(job_id)) == 1

    await eventually(arrived, 30, lambda: f"no webhook for {job_id}")
    [outcome] = setup.outcomes(job_id)
    return outcome


async def test_submit_and_wait(setup: Setup) -> None:
    user_id = f"user-{uuid.uuid4().hex[:8]}"
    code, output = await run_example(
        "submit_and_wait.py", user_id, f"{user_id}@example.com", "ja", env=setup.env
    )

    assert code == 0, output
    answer = json.loads(output.strip().splitlines()[-1])
    assert answer["status"] == "succeeded" and answer["result"] == {"pixels": 640 * 480}
    # The backend example checked the signed dispatch; the receiver verified the webhook.
    outcome = await webhook_of(setup, answer["job_id"])
    assert outcome["type"] == "job.succeeded"
    assert outcome["job"]["result"] == {"pixels": 640 * 480}
    await setup.platform.wait_for_mails(f"{user_id}@example.com", 1)


async def test_submit_many_async(setup: Setup) -> None:
    user_id, _ = await setup.platform.register_user(setup.app)

    code, output = await run_example("submit_many_async.py", user_id, "3", env=setup.env)

    assert code == 0, output
    lines = [json.loads(line) for line in output.strip().splitlines() if line.startswith("{")]
    assert [line["status"] for line in lines] == ["succeeded"] * 3


async def test_produce_to_kafka(setup: Setup) -> None:
    user_id, _ = await setup.platform.register_user(setup.app)

    code, output = await run_example(
        "produce_to_kafka.py", setup.app.app_id, user_id, env=setup.env
    )

    assert code == 0, output
    answer = json.loads(output.strip().splitlines()[-1])
    assert answer["result"] == {"pixels": 320 * 200}
    await webhook_of(setup, answer["job_id"])


async def test_the_backend_refuses_an_unsigned_dispatch(setup: Setup) -> None:
    body = {
        "job_id": "forged",
        "app_id": setup.app.app_id,
        "user_id": "u",
        "attempt": 1,
        "job_type": "thumbnail",
        "payload": {"width": 1, "height": 1},
        "callback_url": "https://attacker.example/steal",
        "callback_token": "t",
        "deadline": "2030-01-01T00:00:00Z",
    }
    response = await setup.platform.http.post(setup.backend_url, json=body)
    assert response.status_code == 401
    assert "not signed" in response.json()["detail"]
