"""The router against the real Kafka and store: job.failed → job.retry.N or job.dead."""

from __future__ import annotations

from datetime import timedelta

from jobplane.events import Failure, FailureKind, JobDead, JobFailed, JobRetryScheduled
from jobplane.jobs import JobStatus
from jobplane.kafka import Publisher
from jobplane.store import JobStore, utcnow
from jobplane.topics import Topics
from jobplane_retry.config import Settings
from jobplane_retry.main import serve

from tests.support import of_job, read_events, running

from .conftest import job_failed, new_job


async def test_failure_schedules_the_next_tier_with_its_due_time(
    settings: Settings, topics: Topics, store: JobStore, publisher: Publisher, unique_id: str
) -> None:
    new = await new_job(store, f"job-{unique_id}")
    await store.claim_attempt(
        new.job_id, 1, callback_token_hash="h", deadline_at=utcnow() + timedelta(minutes=5)
    )
    failed = job_failed(new, 1)
    async with running(serve(settings)):
        before = utcnow()
        await publisher.publish(topics.failed, failed)
        (scheduled,) = await read_events(
            settings, topics.retry(1), JobRetryScheduled, until=bool, where=of_job(new.job_id)
        )
    assert scheduled.retry_number == 1
    assert scheduled.attempt == 1
    assert scheduled.trace_id == new.trace_id
    assert (scheduled.job_type, scheduled.payload, scheduled.timeout_seconds) == (
        new.job_type,
        new.payload,
        new.timeout_seconds,
    )
    assert scheduled.failure == failed.failure
    # 60 s plus up to 10 % jitter, counted from when the router saw the failure.
    assert before + timedelta(seconds=60) <= scheduled.due_at
    assert scheduled.due_at <= utcnow() + timedelta(seconds=66, milliseconds=1)

    job = await store.get_job(new.job_id)
    assert job is not None
    assert job.status is JobStatus.RETRY_SCHEDULED
    assert job.attempt == 2
    assert job.next_attempt_at == scheduled.due_at
    assert job.attempts[0].failure == failed.failure


async def test_replayed_failure_publishes_the_same_decision_without_a_second_transition(
    settings: Settings, topics: Topics, store: JobStore, publisher: Publisher, unique_id: str
) -> None:
    new = await new_job(store, f"job-{unique_id}")
    failed = job_failed(new, 1)  # a failure before any dispatch (queued) counts as well
    async with running(serve(settings)):
        await publisher.publish(topics.failed, failed)
        first = await read_events(
            settings, topics.retry(1), JobRetryScheduled, until=bool, where=of_job(new.job_id)
        )
        job_before = await store.get_job(new.job_id)
        await publisher.publish(topics.failed, failed)
        both = await read_events(
            settings,
            topics.retry(1),
            JobRetryScheduled,
            until=lambda events: len(events) >= 2,
            settle=0.5,
            where=of_job(new.job_id),
        )
    assert len(first) == 1
    assert len(both) == 2
    assert both[0].due_at == both[1].due_at
    job_after = await store.get_job(new.job_id)
    assert job_after == job_before  # not even updated_at changed
    assert job_after is not None and job_after.attempt == 2


async def test_last_attempt_failing_makes_the_job_dead_with_its_history(
    settings: Settings, topics: Topics, store: JobStore, publisher: Publisher, unique_id: str
) -> None:
    new = await new_job(store, f"job-{unique_id}")
    deadline = utcnow() + timedelta(minutes=5)
    for attempt in range(1, 6):
        assert await store.claim_attempt(
            new.job_id, attempt, callback_token_hash="h", deadline_at=deadline
        )
        failure = job_failed(new, attempt, message=f"HTTP 503 #{attempt}").failure
        assert await store.schedule_retry(new.job_id, attempt, failure, utcnow())
    assert await store.claim_attempt(new.job_id, 6, callback_token_hash="h", deadline_at=deadline)
    last = job_failed(new, 6, message="HTTP 503 #6")

    async with running(serve(settings)):
        await publisher.publish(topics.failed, last)
        (dead,) = await read_events(
            settings, topics.dead, JobDead, until=bool, where=of_job(new.job_id)
        )
        await publisher.publish(topics.failed, last)  # a replay: the same outcome again
        replayed = await read_events(
            settings,
            topics.dead,
            JobDead,
            until=lambda events: len(events) >= 2,
            settle=0.5,
            where=of_job(new.job_id),
        )

    assert dead.reason == "failed 6 attempts; last error: HTTP 503 #6"
    assert dead.attempt == 6
    assert dead.failure == last.failure
    assert [a.attempt for a in dead.attempts] == [1, 2, 3, 4, 5, 6]
    assert [a.failure.message if a.failure else None for a in dead.attempts] == [
        f"HTTP 503 #{n}" for n in range(1, 7)
    ]
    assert all(a.dispatched_at is not None and a.ended_at is not None for a in dead.attempts)
    assert len(replayed) == 2
    assert replayed[1].attempts == dead.attempts
    assert replayed[1].reason == dead.reason
    job = await store.get_job(new.job_id)
    assert job is not None and job.status is JobStatus.DEAD and job.attempt == 6
    # Nothing was scheduled for this job.
    for tier in range(1, 6):
        assert not await read_events(
            settings, topics.retry(tier), JobRetryScheduled, until=lambda _: True, settle=0.2,
            where=of_job(new.job_id),
        )  # fmt: skip


async def test_permanent_failure_is_dead_at_once(
    settings: Settings, topics: Topics, store: JobStore, publisher: Publisher, unique_id: str
) -> None:
    new = await new_job(store, f"job-{unique_id}")
    async with running(serve(settings)):
        await publisher.publish(
            topics.failed, job_failed(new, 1, retryable=False, message="HTTP 400")
        )
        (dead,) = await read_events(
            settings, topics.dead, JobDead, until=bool, where=of_job(new.job_id)
        )
    assert dead.reason == "permanent failure: HTTP 400"
    assert [a.attempt for a in dead.attempts] == [1]


async def test_stale_failure_changes_nothing(
    settings: Settings, topics: Topics, store: JobStore, publisher: Publisher, unique_id: str
) -> None:
    new = await new_job(store, f"job-{unique_id}")
    assert await store.claim_attempt(
        new.job_id, 1, callback_token_hash="h", deadline_at=utcnow() + timedelta(minutes=5)
    )
    assert await store.complete(new.job_id, 1, '{"ok": true}')
    marker = await new_job(store, f"marker-{unique_id}")
    async with running(serve(settings)):
        await publisher.publish(topics.failed, job_failed(new, 1))
        await publisher.publish(topics.failed, job_failed(marker, 1))
        await read_events(
            settings, topics.retry(1), JobRetryScheduled, until=bool, where=of_job(marker.job_id)
        )
        # Both partitions' events were handled by now or soon; give the stale one a moment.
        late = await read_events(
            settings, topics.retry(1), JobRetryScheduled, until=lambda _: True, settle=1.0,
            where=of_job(new.job_id),
        )  # fmt: skip
        dead = await read_events(
            settings, topics.dead, JobDead, until=lambda _: True, settle=0.2,
            where=of_job(new.job_id),
        )  # fmt: skip
    assert late == [] and dead == []
    job = await store.get_job(new.job_id)
    assert job is not None and job.status is JobStatus.SUCCEEDED


async def test_failure_of_an_unknown_job_is_dead_with_empty_history(
    settings: Settings, topics: Topics, publisher: Publisher, unique_id: str
) -> None:
    failed = JobFailed(
        job_id=f"ghost-{unique_id}",
        app_id="no-such-app",
        user_id="user-1",
        attempt=1,
        trace_id="trace-ghost",
        job_type="thumbnail",
        payload="{}",
        failure=Failure(kind=FailureKind.REJECTED, message="unknown app", retryable=False),
    )
    async with running(serve(settings)):
        await publisher.publish(topics.failed, failed)
        (dead,) = await read_events(
            settings, topics.dead, JobDead, until=bool, where=of_job(failed.job_id)
        )
    assert dead.reason == "unknown app"
    assert dead.attempts == ()
    assert dead.app_id == "no-such-app"
    assert dead.trace_id == "trace-ghost"
