"""The dispatcher and the operators' states: a disabled app's jobs are held, a cancelled
job is never dispatched. Real Kafka, store and HTTP backend."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from jobplane.events import FailureKind, JobFailed
from jobplane.jobs import JobStatus
from jobplane.store import JobStore, NewJob, utcnow

from tests.support import job_requested

from .conftest import Kafka, register_app
from .http_stub import StubBackend
from .test_dispatch import failed_of


async def _stored(store: JobStore, app_id: str, job_id: str) -> None:
    event = job_requested(app_id, job_id)
    await store.create_job(
        NewJob(
            job_id=job_id,
            app_id=app_id,
            user_id=event.user_id,
            job_type=event.job_type,
            payload=event.payload,
            timeout_seconds=None,
            trace_id=event.trace_id,
        )
    )


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_a_disabled_apps_job_is_held_not_dispatched(
    store: JobStore, kafka: Kafka, backend: StubBackend, dispatcher: None
) -> None:
    await register_app(store, "app-off", backend.url)
    await store.update_app("app-off", {"disabled": True})
    await _stored(store, "app-off", "job-held")
    before = utcnow()

    await kafka.produce(kafka.topics.requested, job_requested("app-off", "job-held"))

    async def held() -> bool:
        job = await store.get_job("job-held")
        return job is not None and job.held_at is not None

    await _until(held)
    job = await store.get_job("job-held")
    assert job is not None
    assert job.status is JobStatus.QUEUED and job.attempts == []
    # Still owed: requested again at the recheck (or when the app is enabled again).
    assert job.announce_due_at is not None and job.announce_due_at > before
    await asyncio.sleep(0.5)
    assert backend.calls == []


async def test_a_disabled_apps_job_produced_to_kafka_is_rejected(
    store: JobStore, kafka: Kafka, backend: StubBackend, dispatcher: None
) -> None:
    await register_app(store, "app-off2", backend.url)
    await store.update_app("app-off2", {"disabled": True})

    await kafka.produce(kafka.topics.requested, job_requested("app-off2", "job-direct-off"))

    failed = await kafka.read(kafka.topics.failed, JobFailed, until=failed_of("job-direct-off"))
    [failure] = [e.failure for e in failed if e.job_id == "job-direct-off"]
    assert failure.kind is FailureKind.REJECTED and not failure.retryable
    assert "disabled" in failure.message
    assert await store.get_job("job-direct-off") is None
    assert backend.calls == []


async def test_a_cancelled_job_is_never_dispatched(
    store: JobStore, kafka: Kafka, backend: StubBackend, dispatcher: None
) -> None:
    await register_app(store, "app-c", backend.url)
    await _stored(store, "app-c", "job-cancelled")
    await _stored(store, "app-c", "job-marker")
    assert await store.cancel("job-cancelled", by="admin")

    await kafka.produce(
        kafka.topics.requested,
        job_requested("app-c", "job-cancelled"),
        job_requested("app-c", "job-marker"),
    )
    await kafka.wait_committed(kafka.topics.requested, 2)

    assert [c.body["job_id"] for c in backend.calls] == ["job-marker"]
    job = await store.get_job("job-cancelled")
    assert job is not None and job.status is JobStatus.CANCELLED and job.attempts == []
