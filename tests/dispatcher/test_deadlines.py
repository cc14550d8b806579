"""The deadline sweeper, against the real Kafka and store."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from jobplane.events import FailureKind, JobFailed
from jobplane.jobs import JobStatus
from jobplane.kafka import Publisher
from jobplane.store import JobStore, NewJob
from jobplane.topics import Topics
from jobplane_dispatcher.config import Settings
from jobplane_dispatcher.deadlines import DeadlineSweeper
from pymongo import AsyncMongoClient

from tests.support import job_requested

from .conftest import Kafka, register_app
from .http_stub import StubBackend, refusing_url

pytestmark = pytest.mark.timeout(120)


async def test_a_job_without_a_result_by_its_deadline_fails_once_with_timeout(
    settings: Settings, store: JobStore, kafka: Kafka, backend: StubBackend, dispatcher: None
) -> None:
    await register_app(store, "app-slow", backend.url)
    event = job_requested("app-slow", "job-slow", timeout_seconds=1)
    await kafka.produce(kafka.topics.requested, event)

    def timed_out(events: list[JobFailed]) -> bool:
        return any(e.job_id == "job-slow" for e in events)

    # Several sweeps (0.2 s apart) pass during the settle time: still one report.
    events = await kafka.read(kafka.topics.failed, JobFailed, until=timed_out, settle=2.0)
    (failed,) = events
    assert failed.failure.kind is FailureKind.TIMEOUT
    assert failed.failure.retryable is True
    assert "no result by the deadline" in failed.failure.message
    assert (failed.attempt, failed.trace_id, failed.timeout_seconds) == (1, event.trace_id, 1)
    assert failed.payload == event.payload
    assert len(backend.calls) == 1


async def test_sweep_reports_only_overdue_open_attempts(
    store: JobStore, publisher: Publisher, topics: Topics, kafka: Kafka
) -> None:
    now = datetime.now(UTC)
    for job_id, deadline in (
        ("late", now - timedelta(seconds=5)),
        ("early", now + timedelta(hours=1)),
    ):
        await store.create_job(
            NewJob(
                job_id=job_id,
                app_id="app",
                user_id="u",
                job_type="t",
                payload="{}",
                timeout_seconds=None,
                trace_id=f"trace-{job_id}",
            )
        )
        assert await store.claim_attempt(job_id, 1, callback_token_hash="h", deadline_at=deadline)
    sweeper = DeadlineSweeper(store, publisher, topics, 0.1)
    assert await sweeper.sweep() == 1
    assert await sweeper.sweep() == 0  # reported already
    (failed,) = await kafka.read(
        topics.failed, JobFailed, until=lambda events: len(events) >= 1, settle=0.5
    )
    assert (failed.job_id, failed.trace_id) == ("late", "trace-late")
    job = await store.get_job("late")
    assert job is not None
    assert job.status is JobStatus.DISPATCHED  # the retry service decides


async def test_a_failing_sweep_does_not_stop_the_sweeper(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # A store whose server refuses connections: every sweep fails.
    async with refusing_url() as url:
        port = url.split(":")[2].split("/")[0]
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            f"mongodb://127.0.0.1:{port}/", serverSelectionTimeoutMS=50
        )
        try:
            topics = Topics(settings.topic_prefix)
            sweeper = DeadlineSweeper(JobStore(client["x"]), None, topics, 0.01)  # type: ignore[arg-type]
            task = asyncio.create_task(sweeper.run())
            await asyncio.sleep(1.8)  # a sweep fails after ~0.5 s of server selection
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            await client.close()
    failures = [r for r in caplog.records if r.getMessage().startswith("deadline sweep failed")]
    assert len(failures) >= 2
