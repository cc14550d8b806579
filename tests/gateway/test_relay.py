"""The outbox relay re-publishes what a job's state owes once it is overdue, and nothing
for a job whose consumer has acted."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

from jobplane.events import Failure, FailureKind, JobCompleted, JobDead, JobFailed, JobRequested
from jobplane.jobs import Job, OwedTopic
from jobplane.store import utcnow
from jobplane_gateway.relay import Relay

from .harness import Gateway

FAILURE = Failure(kind=FailureKind.HTTP_STATUS, message="503", retryable=True, http_status=503)


async def overdue(gateway: Gateway, job_id: str) -> None:
    """Move the job's owed announcement into the past, as if the grace had run out."""
    await gateway.conns.store.jobs.update_one(
        {"_id": job_id, "announce_due_at": {"$exists": True}},
        {"$set": {"announce_due_at": utcnow() - timedelta(seconds=1)}},
    )


def relay_of(gateway: Gateway) -> Relay:
    conns = gateway.conns
    return Relay(conns.store, conns.publisher, conns.topics, gateway.settings)


async def test_a_claimed_job_is_never_announced_again(gateway: Gateway) -> None:
    app = await gateway.register_app()
    job = await gateway.submitted_job(app)
    await gateway.dispatch(job.job_id, 1, running=False)  # the claim clears the debt
    claimed = await gateway.conns.store.get_job(job.job_id)
    assert claimed is not None and claimed.announce_due_at is None
    await overdue(gateway, job.job_id)  # matches nothing: nothing is owed

    assert await relay_of(gateway).run_once() == 0
    events = await gateway.wait_events(gateway.conns.topics.requested, JobRequested, job.job_id)
    assert len(events) == 1  # the submit's own


async def test_each_state_is_relayed_as_the_event_it_owes(gateway: Gateway) -> None:
    app = await gateway.register_app()
    store = gateway.conns.store
    topics = gateway.conns.topics
    succeeded = await gateway.submitted_job(app)
    await gateway.dispatch(succeeded.job_id, 1)
    assert await store.complete(succeeded.job_id, 1, '{"ok":true}') is not None
    failed = await gateway.submitted_job(app)
    await gateway.dispatch(failed.job_id, 1)
    assert await store.report_failure(failed.job_id, 1, FAILURE) is not None
    retried = await gateway.submitted_job(app)
    await gateway.dispatch(retried.job_id, 1)
    assert await store.schedule_retry(retried.job_id, 1, FAILURE, utcnow()) is not None
    await store.jobs.update_one(  # what the retry router's write sets (its own area)
        {"_id": retried.job_id}, {"$set": {"announce_due_at": utcnow()}}
    )
    dead = await gateway.submitted_job(app)
    await gateway.dispatch(dead.job_id, 1)
    assert await store.mark_dead(dead.job_id, 1, FAILURE) is not None
    await store.jobs.update_one({"_id": dead.job_id}, {"$set": {"announce_due_at": utcnow()}})
    for job in (succeeded, failed, retried, dead):
        await overdue(gateway, job.job_id)

    assert await relay_of(gateway).run_once() == 4

    [completed] = await gateway.wait_events(topics.completed, JobCompleted, succeeded.job_id)
    assert json.loads(completed.result) == {"ok": True}
    [failure] = await gateway.wait_events(topics.failed, JobFailed, failed.job_id)
    assert (failure.attempt, failure.failure) == (1, FAILURE)
    requested = await gateway.wait_events(topics.requested, JobRequested, retried.job_id, 2)
    assert [e.attempt for e in requested] == [1, 2]
    [gone] = await gateway.wait_events(topics.dead, JobDead, dead.job_id)
    assert gone.failure == FAILURE
    assert [a.attempt for a in gone.attempts] == [1]


async def test_several_relays_announce_an_owed_event_once(gateway: Gateway) -> None:
    app = await gateway.register_app()
    jobs = [await gateway.submitted_job(app) for _ in range(3)]
    for job in jobs:
        await overdue(gateway, job.job_id)

    counts = await asyncio.gather(*(relay_of(gateway).run_once() for _ in range(4)))

    assert sum(counts) == 3
    for job in jobs:
        requested = gateway.conns.topics.requested
        events = await gateway.wait_events(requested, JobRequested, job.job_id, 2)
        assert len(events) == 2  # the submit's, and one relayed


def test_what_a_job_owes_follows_its_state() -> None:
    now = utcnow()
    base = Job.from_document(
        {
            "_id": "j",
            "app_id": "a",
            "user_id": "u",
            "job_type": "t",
            "payload": "{}",
            "status": "queued",
            "attempt": 1,
            "created_at": now,
            "updated_at": now,
        }
    )
    running = Job.from_document(
        {
            "_id": "j",
            "app_id": "a",
            "user_id": "u",
            "job_type": "t",
            "payload": "{}",
            "status": "running",
            "attempt": 2,
            "created_at": now,
            "updated_at": now,
            "attempts": {"2": {"report": {"status": "succeeded", "at": now}}},
        }
    )
    owed = base.owed_event()
    assert owed is not None and owed[0] is OwedTopic.REQUESTED
    assert running.owed_event() is None  # an open attempt without a failure report


async def test_an_unreadable_job_does_not_hold_the_relay_back(gateway: Gateway) -> None:
    app = await gateway.register_app()
    job = await gateway.submitted_job(app)
    long_ago = utcnow() - timedelta(days=1)
    await gateway.conns.store.jobs.insert_one(
        {"_id": "broken", "announce_due_at": long_ago, "status": "no-such-status"}
    )
    await overdue(gateway, job.job_id)

    assert await relay_of(gateway).run_once() == 1

    events = await gateway.wait_events(gateway.conns.topics.requested, JobRequested, job.job_id, 2)
    assert len(events) == 2
    broken = await gateway.conns.store.jobs.find_one({"_id": "broken"})
    assert broken is not None and "announce_due_at" not in broken
