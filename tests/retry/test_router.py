"""The router against the real Kafka and store: job.failed → job.retry.N or job.dead."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from jobplane.events import (
    Failure,
    FailureKind,
    JobDead,
    JobFailed,
    JobRequested,
    JobRetryScheduled,
)
from jobplane.jobs import JobStatus
from jobplane.kafka import Publisher
from jobplane.store import JobStore, utcnow
from jobplane.topics import Topics
from jobplane_retry.config import Settings
from jobplane_retry.main import serve

from tests.support import committed, eventually, of_job, read_events, running

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
    # The decision's write took over the failure's outbox entry: the next job.requested is
    # owed by the due time plus the grace, when the relay would publish it.
    doc = await store.jobs.find_one({"_id": new.job_id})
    assert doc is not None
    grace = timedelta(seconds=settings.announce_grace_seconds)
    assert doc["announce_due_at"] == scheduled.due_at + grace
    assert job.attempts[0].failure == failed.failure


async def test_replayed_failure_changes_nothing_and_publishes_nothing(
    settings: Settings, topics: Topics, store: JobStore, publisher: Publisher, unique_id: str
) -> None:
    new = await new_job(store, f"job-{unique_id}")
    failed = job_failed(new, 1)  # a failure before any dispatch (queued) counts as well
    marker = await new_job(store, f"marker-{unique_id}")
    async with running(serve(settings)):
        await publisher.publish(topics.failed, failed)
        first = await read_events(
            settings, topics.retry(1), JobRetryScheduled, until=bool, where=of_job(new.job_id)
        )
        job_before = await store.get_job(new.job_id)
        await publisher.publish(topics.failed, failed)
        # The marker's failure, routed after the replay (same job order is not needed: the
        # router's group commits in order per partition, so we wait for both to commit).
        await publisher.publish(topics.failed, job_failed(marker, 1))
        await read_events(
            settings, topics.retry(1), JobRetryScheduled, until=bool, where=of_job(marker.job_id)
        )
        await _all_committed(settings, topics, 3)
        both = await read_events(
            settings, topics.retry(1), JobRetryScheduled, where=of_job(new.job_id)
        )
    assert len(first) == 1
    assert both == first  # the replay published nothing: the relay covers a lost publish
    job_after = await store.get_job(new.job_id)
    assert job_after == job_before  # not even updated_at changed
    assert job_after is not None and job_after.attempt == 2


async def _all_committed(settings: Settings, topics: Topics, total: int) -> None:
    async def done() -> bool:
        offsets = await committed(settings, settings.router_group_id, topics.failed)
        return sum(offsets.values()) == total

    await eventually(done, 30, lambda: f"the router did not commit {total} failures")


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
        await publisher.publish(topics.failed, last)  # a replay: changes and publishes nothing
        await _all_committed(settings, topics, 2)
        replayed = await read_events(settings, topics.dead, JobDead, where=of_job(new.job_id))

    assert dead.reason == "failed 6 attempts; last error: HTTP 503 #6"
    assert dead.attempt == 6
    assert dead.failure == last.failure
    assert [a.attempt for a in dead.attempts] == [1, 2, 3, 4, 5, 6]
    assert [a.failure.message if a.failure else None for a in dead.attempts] == [
        f"HTTP 503 #{n}" for n in range(1, 7)
    ]
    assert all(a.dispatched_at is not None and a.ended_at is not None for a in dead.attempts)
    assert replayed == [dead]
    job = await store.get_job(new.job_id)
    assert job is not None and job.status is JobStatus.DEAD and job.attempt == 6
    doc = await store.jobs.find_one({"_id": new.job_id})
    assert doc is not None
    assert doc["announce_due_at"] == doc["finished_at"] + timedelta(
        seconds=settings.announce_grace_seconds
    )  # job.dead is owed until the notifier claims it
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


async def test_a_burst_of_failures_is_routed_concurrently_and_in_order_per_job(
    settings: Settings, topics: Topics, store: JobStore, publisher: Publisher, unique_id: str
) -> None:
    """200 failures at once: 100 jobs get a permanent failure then a retryable one for the
    same attempt (in that order, so each must end dead: handled out of order, the retryable
    one would schedule a retry first), 100 jobs a retryable one (a retry after 1 s). Then
    every retry is requested by the tiers, none before its due time."""
    settings = settings.model_copy(update={"retry_delays_seconds": [1.0], "jitter": 0.1})
    ordered = [await new_job(store, f"dies-{n}-{unique_id}") for n in range(100)]
    retried = [await new_job(store, f"retries-{n}-{unique_id}") for n in range(100)]
    async with running(serve(settings)):
        start = utcnow()
        sent = []
        for new in ordered:
            sent.append(await publisher.send(topics.failed, job_failed(new, 1, retryable=False)))
            sent.append(await publisher.send(topics.failed, job_failed(new, 1)))
        for new in retried:
            sent.append(await publisher.send(topics.failed, job_failed(new, 1)))
        await asyncio.gather(*sent)
        await _all_committed(settings, topics, 300)
        routed_in = utcnow() - start
        requested = await read_events(
            settings,
            topics.requested,
            JobRequested,
            until=lambda found: len(found) >= 100,
            where=lambda e: e.job_id.startswith("retries-"),
        )
        scheduled = await read_events(settings, topics.retry(1), JobRetryScheduled)
        dead = await read_events(settings, topics.dead, JobDead)
    print(f"300 failures routed in {routed_in.total_seconds():.2f} s")
    assert sorted(e.job_id for e in scheduled) == sorted(new.job_id for new in retried)
    assert sorted(e.job_id for e in dead) == sorted(new.job_id for new in ordered)
    due = {e.job_id: e.due_at for e in scheduled}
    assert sorted(e.job_id for e in requested) == sorted(due)
    # Requested at most the release lead ahead, to be run at the due time, never before.
    lead = timedelta(seconds=settings.release_lead_seconds)
    assert all(e.not_before == due[e.job_id] for e in requested)
    assert all(e.occurred_at >= due[e.job_id] - lead for e in requested)
    assert all(e.attempt == 2 for e in requested)


async def test_a_redriven_job_counts_its_retries_from_the_redrive(
    settings: Settings, topics: Topics, store: JobStore, publisher: Publisher, unique_id: str
) -> None:
    new = await new_job(store, f"job-{unique_id}")
    last = job_failed(new, 6)
    await store.jobs.update_one({"_id": new.job_id}, {"$set": {"attempt": 6}})
    dead = await store.mark_dead(new.job_id, 6, last.failure)
    assert dead is not None
    redriven = await store.redrive(dead, by="admin")
    assert redriven is not None and redriven.attempt == 7
    await store.claim_attempt(
        new.job_id, 7, callback_token_hash="h", deadline_at=utcnow() + timedelta(minutes=5)
    )
    async with running(serve(settings)):
        # The earlier run's last failure, replayed, then the new run's first.
        await publisher.publish(topics.failed, last)
        await publisher.publish(topics.failed, job_failed(new, 7))
        (scheduled,) = await read_events(
            settings, topics.retry(1), JobRetryScheduled, until=bool, where=of_job(new.job_id)
        )
    # Attempt 7 is the run's first: its first retry (tier 1), not a death for 7 attempts.
    assert (scheduled.attempt, scheduled.retry_number) == (7, 1)
    job = await store.get_job(new.job_id)
    assert job is not None
    assert (job.status, job.attempt, job.run_attempt) == (JobStatus.RETRY_SCHEDULED, 8, 2)
    assert await read_events(settings, topics.dead, JobDead, where=of_job(new.job_id)) == []
