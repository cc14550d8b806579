"""The jobs a scenario submits and the well-behaved client that submits them.

The mix, per ten jobs: seven succeed at once (alternately 200-with-result and 202 then
callback), two fail 1-3 times then succeed, one always fails (and so ends dead).
A job counts as acknowledged when the gateway answered 202. The client sends every job with
an Idempotency-Key and sends it again on a 503 or a connection error, like an app would.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.fault.processes import ADMIN_KEY, BACKEND_PORT, JOB_TIMEOUT_SECONDS, Deployment

USERS = 10
SUBMIT_CONCURRENCY = 8
# How long after its planned time a job may keep being re-sent (through a Kafka or store
# outage) before the client gives up on it; a job given up on was never acknowledged, so it
# is not lost (the table counts them apart).
SUBMIT_GIVE_UP_SECONDS = 120.0


@dataclass(frozen=True)
class JobSpec:
    index: int
    user_id: str
    mode: str  # succeed | flap | fail
    payload: dict[str, Any]

    @property
    def expected_status(self) -> str:
        return "dead" if self.mode == "fail" else "succeeded"


@dataclass(frozen=True)
class Acknowledged:
    spec: JobSpec
    job_id: str
    at: float  # time.time() of the 202


def job_mix(count: int) -> list[JobSpec]:
    specs = []
    for index in range(count):
        slot = index % 10
        user_id = f"user-{index % USERS}"
        if slot < 7:
            reply = "inline" if slot % 2 else "callback"
            specs.append(JobSpec(index, user_id, "succeed", {"mode": "succeed", "reply": reply}))
        elif slot < 9:
            fail_times = 1 + index % 3
            specs.append(
                JobSpec(index, user_id, "flap", {"mode": "flap", "fail_times": fail_times})
            )
        else:
            specs.append(JobSpec(index, user_id, "fail", {"mode": "fail"}))
    return specs


def user_email(deployment: Deployment, user_id: str) -> str:
    return f"{user_id}-{deployment.name}@fault.example"


def app_admin_email(deployment: Deployment) -> str:
    return f"app-admin-{deployment.name}@fault.example"


async def register(http: httpx.AsyncClient, deployment: Deployment) -> str:
    """Register the scenario's app and its users through the public API; the app's key."""
    created = await http.post(
        "/v1/apps",
        json={
            "app_id": f"app-{deployment.name}",
            "backend_url": f"http://127.0.0.1:{BACKEND_PORT}/jobs",
            "default_timeout_seconds": JOB_TIMEOUT_SECONDS,
            "admin_emails": [app_admin_email(deployment)],
        },
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    created.raise_for_status()
    api_key = str(created.json()["api_key"])
    for number in range(USERS):
        user_id = f"user-{number}"
        answer = await http.put(
            f"/v1/users/{user_id}",
            json={"email": user_email(deployment, user_id), "language": "en"},
            headers={"Authorization": f"Bearer {api_key}"},
        )
        answer.raise_for_status()
    return api_key


@dataclass
class SubmitStats:
    acknowledged: dict[str, Acknowledged] = field(default_factory=dict)
    given_up: int = 0
    resent: int = 0
    answers: Counter[int] = field(default_factory=Counter)  # status code (0: no answer) → count


async def submit_all(
    http: httpx.AsyncClient, api_key: str, scenario: str, specs: list[JobSpec], rate: float
) -> SubmitStats:
    """Submit `specs` at about `rate` jobs per second; every job is re-sent until acknowledged
    or refused (4xx), for at most SUBMIT_GIVE_UP_SECONDS."""
    stats = SubmitStats()
    slots = asyncio.Semaphore(SUBMIT_CONCURRENCY)
    began = time.monotonic()

    async def submit(spec: JobSpec) -> None:
        planned = began + spec.index / rate
        give_up = planned + SUBMIT_GIVE_UP_SECONDS
        await asyncio.sleep(max(0.0, planned - time.monotonic()))
        delay = 0.25
        while True:
            async with slots:  # held for one try only, never while waiting to re-send
                status = await _post_job(http, api_key, f"{scenario}-{spec.index}", spec, stats)
            stats.answers[status] += 1
            if status == 202:
                return
            if 400 <= status < 500 and status not in (408, 429):
                return  # refused: never acknowledged
            if time.monotonic() + delay > give_up:
                stats.given_up += 1
                return
            stats.resent += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 4.0)

    await asyncio.gather(*(submit(spec) for spec in specs))
    return stats


async def _post_job(
    http: httpx.AsyncClient, api_key: str, idempotency_key: str, spec: JobSpec, stats: SubmitStats
) -> int:
    """One try; the answer's status code, 0 when there was none (refused, reset, timeout)."""
    try:
        response = await http.post(
            "/v1/jobs",
            json={
                "user_id": spec.user_id,
                "job_type": "fault-test",
                "payload": spec.payload,
                "timeout_seconds": JOB_TIMEOUT_SECONDS,
            },
            headers={"Authorization": f"Bearer {api_key}", "Idempotency-Key": idempotency_key},
        )
    except httpx.HTTPError:
        return 0
    if response.status_code == 202:
        job_id = str(response.json()["job_id"])
        stats.acknowledged[job_id] = Acknowledged(spec, job_id, time.time())
    return response.status_code
