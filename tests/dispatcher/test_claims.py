"""The dispatcher's guarded writes on the real store: claims, take-overs and first reports."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import timedelta

from jobplane.events import Failure, FailureKind
from jobplane.jobs import JobStatus
from jobplane.store import JobStore, NewJob, utcnow

FAILURE = Failure(kind=FailureKind.UNREACHABLE, message="refused", retryable=True)


async def stored_job(store: JobStore, job_id: str = "job-1") -> str:
    await store.create_job(
        NewJob(
            job_id=job_id,
            app_id="app",
            user_id="user",
            job_type="t",
            payload="{}",
            timeout_seconds=None,
            trace_id="trace",
        )
    )
    return job_id


async def test_a_claim_is_taken_over_only_when_it_is_old_and_nothing_came_of_it(
    store: JobStore,
) -> None:
    job_id = await stored_job(store)
    deadline = utcnow() + timedelta(minutes=5)
    assert await store.claim_attempt(
        job_id, 1, app_id="app", callback_token_hash="h1", deadline_at=deadline
    )

    def reclaim(token_hash: str, claimed_before_s: float) -> Awaitable[bool]:
        return store.reclaim_attempt(
            job_id,
            1,
            app_id="app",
            callback_token_hash=token_hash,
            deadline_at=deadline,
            claimed_before=utcnow() + timedelta(seconds=claimed_before_s),
        )

    assert not await reclaim("h2", -60)  # the claim is younger than the lease
    assert await reclaim("h2", +1)  # its lease is over
    # The first claimant comes back: its writes no longer match.
    assert not await store.mark_running(job_id, 1, "h1")
    assert await store.report_failure(job_id, 1, FAILURE, callback_token_hash="h1") is None
    assert await store.mark_running(job_id, 1, "h2")
    running = await store.get_job(job_id)
    assert running is not None and running.status is JobStatus.RUNNING
    # Accepted: never taken over again.
    assert not await reclaim("h3", +1)


async def test_the_first_report_wins_and_closes_the_deadline(store: JobStore) -> None:
    job_id = await stored_job(store)
    deadline = utcnow() - timedelta(seconds=1)
    assert await store.claim_attempt(job_id, 1, callback_token_hash="h", deadline_at=deadline)
    assert [j.job_id for j in await store.overdue_attempts(utcnow())] == [job_id]
    reported = await store.report_failure(job_id, 1, FAILURE, callback_token_hash="h")
    assert reported is not None and reported.deadline_at is None
    assert await store.overdue_attempts(utcnow()) == []
    # A timeout, a success at once or an "accepted" after it: nothing changes.
    assert await store.report_failure(job_id, 1, FAILURE) is None
    assert await store.complete(job_id, 1, "1", callback_token_hash="h") is None
    assert not await store.mark_running(job_id, 1, "h")
    doc = await store.jobs.find_one({"_id": job_id})
    assert doc is not None
    assert doc["attempts"]["1"]["report"]["error"]["kind"] == "unreachable"
    assert doc["status"] == "dispatched" and "announce_due_at" in doc


async def test_a_claim_of_another_apps_job_matches_nothing(store: JobStore) -> None:
    job_id = await stored_job(store)
    deadline = utcnow() + timedelta(minutes=5)
    assert not await store.claim_attempt(
        job_id, 1, app_id="other", callback_token_hash="h", deadline_at=deadline
    )
