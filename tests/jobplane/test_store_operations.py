"""The operators' store transitions on the real store: redrive, cancel, holding a disabled
app's jobs. Each is one guarded write; what an earlier run or a finished job sends late
matches nothing."""

from __future__ import annotations

from datetime import timedelta

from jobplane.events import Failure, FailureKind
from jobplane.jobs import Job, JobStatus, Report
from jobplane.store import JobStore, MailClaim, MailState, RunState, utcnow

from tests.jobplane.test_store import FAILURE, new_job

HOUR = timedelta(hours=1)


async def _dead(store: JobStore, job_id: str = "job-1") -> Job:
    """A job whose first attempt failed for good, its user mailed about it."""
    await store.create_job(new_job(job_id))
    assert await store.claim_attempt(
        job_id, 1, callback_token_hash="h1", deadline_at=utcnow() + HOUR
    )
    assert await store.report_failure(job_id, 1, FAILURE)
    dead = await store.mark_dead(job_id, 1, FAILURE)
    assert dead is not None
    stale = utcnow() - HOUR
    claimed = await store.claim_user_mail(
        job_id, "dead", claim_id="c1", message_id="m1", stale_before=stale
    )
    assert claimed is MailClaim.CLAIMED
    assert await store.settle_user_mail(job_id, "dead", MailState.SENT, claim_id="c1")
    job = await store.get_job(job_id)
    assert job is not None
    return job


async def test_a_redrive_starts_a_new_run_and_keeps_the_history(store: JobStore) -> None:
    dead = await _dead(store)

    again = await store.redrive(dead, by="admin")

    assert again is not None
    assert (again.status, again.attempt, again.run_start_attempt) == (JobStatus.QUEUED, 2, 2)
    assert again.run_attempt == 1
    assert again.announce_due_at is not None  # owes the new run's job.requested
    assert again.mail_states == {} and again.notified_user_at is None
    [earlier] = again.attempts
    assert earlier.number == 1 and earlier.failure == FAILURE
    [entry] = again.redrives
    assert (entry.by, entry.from_attempt, entry.failure) == ("admin", 1, FAILURE)
    assert entry.mail_states == {"dead": "sent"}
    assert again.owed_event() is not None
    assert again.requested_event().attempt == 2


async def test_redriving_twice_redrives_once(store: JobStore) -> None:
    dead = await _dead(store)

    first = await store.redrive(dead, by="admin")
    second = await store.redrive(dead, by="app:app")  # the same dead job, as read before

    assert first is not None and second is None
    job = await store.get_job("job-1")
    assert job is not None and len(job.redrives) == 1


async def test_no_event_of_the_earlier_run_touches_the_redriven_job(store: JobStore) -> None:
    dead = await _dead(store)
    assert await store.redrive(dead, by="admin")
    deadline = utcnow() + HOUR

    # The earlier run's job.requested, job.failed, callback: attempt 1 is over.
    assert (
        await store.claim_attempt("job-1", 1, callback_token_hash="x", deadline_at=deadline)
        is False
    )
    assert await store.complete("job-1", 1, "{}", callback_token_hash="h1") is None
    assert await store.report_failure("job-1", 1, FAILURE, callback_token_hash="h1") is None
    assert await store.schedule_retry("job-1", 1, FAILURE, utcnow()) is None
    assert await store.mark_dead("job-1", 1, FAILURE) is None
    job = await store.get_job("job-1")
    assert job is not None and (job.status, job.attempt) == (JobStatus.QUEUED, 2)


async def test_the_retry_decision_of_a_redriven_job_counts_from_its_run(store: JobStore) -> None:
    dead = await _dead(store)
    assert await store.redrive(dead, by="admin")
    assert await store.claim_attempt("job-1", 2, callback_token_hash="h2", deadline_at=utcnow())
    assert await store.report_failure("job-1", 2, FAILURE)

    # A decision that assumed a job never redriven matches nothing; one of this run does.
    assert await store.schedule_retry("job-1", 2, FAILURE, utcnow()) is None
    assert await store.mark_dead("job-1", 2, FAILURE, run_start_attempt=7) is None
    retried = await store.schedule_retry("job-1", 2, FAILURE, utcnow(), run_start_attempt=2)

    assert retried is not None
    assert (retried.status, retried.attempt, retried.run_attempt) == (
        JobStatus.RETRY_SCHEDULED,
        3,
        2,
    )


async def test_the_new_run_gets_its_own_user_mail_and_the_old_one_none(store: JobStore) -> None:
    dead = await _dead(store)
    before = await store.run_of("job-1")
    assert before == RunState(run_start_attempt=None, redrives=0)
    assert await store.redrive(dead, by="admin")
    stale = utcnow() - HOUR

    # A replay of the first run's job.dead, read before the redrive: nothing to mail.
    replay = await store.claim_user_mail(
        "job-1", "dead", claim_id="c2", message_id="m2", stale_before=stale, run=before
    )
    assert replay is MailClaim.DONE
    # The new run dies too: its mail is claimed once.
    assert await store.claim_attempt("job-1", 2, callback_token_hash="h2", deadline_at=utcnow())
    assert await store.mark_dead("job-1", 2, FAILURE, run_start_attempt=2)
    now = await store.run_of("job-1")
    assert now == RunState(run_start_attempt=2, redrives=1)
    assert now.covers(2) and not now.covers(1)
    first = await store.claim_user_mail(
        "job-1", "dead", claim_id="c3", message_id="m3", stale_before=stale, run=now
    )
    second = await store.claim_user_mail(
        "job-1", "dead", claim_id="c4", message_id="m4", stale_before=stale, run=now
    )
    assert (first, second) == (MailClaim.CLAIMED, MailClaim.BUSY)


async def test_only_a_dead_job_is_redriven(store: JobStore) -> None:
    queued, _ = await store.create_job(new_job("job-q"))

    assert await store.redrive(queued, by="admin") is None


async def test_a_cancelled_queued_job_is_never_claimed(store: JobStore) -> None:
    await store.create_job(new_job())

    cancelled = await store.cancel("job-1", by="app:app", app_id="app")

    assert cancelled is not None and cancelled.status is JobStatus.CANCELLED
    assert cancelled.cancelled is not None and cancelled.cancelled.by == "app:app"
    assert cancelled.announce_due_at is None and cancelled.owed_event() is None
    assert cancelled.status.finished
    assert not await store.claim_attempt("job-1", 1, callback_token_hash="h", deadline_at=utcnow())
    assert await store.cancel("job-1", by="admin") is None  # once


async def test_an_app_cancels_only_its_own_jobs(store: JobStore) -> None:
    await store.create_job(new_job())

    assert await store.cancel("job-1", by="app:other", app_id="other") is None
    job = await store.get_job("job-1")
    assert job is not None and job.status is JobStatus.QUEUED


async def test_a_retry_scheduled_job_cancelled_is_not_requested_again(store: JobStore) -> None:
    await store.create_job(new_job())
    assert await store.claim_attempt("job-1", 1, callback_token_hash="h", deadline_at=utcnow())
    assert await store.schedule_retry("job-1", 1, FAILURE, utcnow() + HOUR)

    cancelled = await store.cancel("job-1", by="admin")

    assert cancelled is not None and cancelled.next_attempt_at is None
    assert (
        await store.claim_attempt("job-1", 2, callback_token_hash="h", deadline_at=utcnow())
        is False
    )
    assert await store.due_announcements(utcnow() + 2 * HOUR, 100) == []


async def test_a_cancelled_running_jobs_report_is_kept_and_changes_nothing(
    store: JobStore,
) -> None:
    await store.create_job(new_job())
    deadline = utcnow() + timedelta(seconds=1)
    assert await store.claim_attempt("job-1", 1, callback_token_hash="h", deadline_at=deadline)
    assert await store.mark_running("job-1", 1, "h")
    assert await store.cancel("job-1", by="admin")

    assert await store.complete("job-1", 1, '{"ok": 1}', callback_token_hash="h") is None
    report = Report("succeeded", utcnow())
    wrong = await store.record_report_after_cancel("job-1", 1, report, callback_token_hash="x")
    kept = await store.record_report_after_cancel("job-1", 1, report, callback_token_hash="h")
    again = await store.record_report_after_cancel("job-1", 1, report, callback_token_hash="h")

    assert wrong is None and kept is not None and again is None
    assert (kept.status, kept.result, kept.announce_due_at) == (JobStatus.CANCELLED, None, None)
    attempt = kept.attempt_info(1)
    assert attempt is not None and attempt.report is not None
    assert attempt.report.status == "succeeded"
    # No deadline left for the sweeper.
    assert await store.overdue_attempts(utcnow() + HOUR) == []


async def test_a_finished_job_is_not_cancelled(store: JobStore) -> None:
    await store.create_job(new_job())
    assert await store.claim_attempt("job-1", 1, callback_token_hash="h", deadline_at=utcnow())
    assert await store.complete("job-1", 1, "{}")
    await _dead(store, "job-2")

    assert await store.cancel("job-1", by="admin") is None
    assert await store.cancel("job-2", by="admin") is None


async def test_a_held_job_waits_queued_and_is_released(store: JobStore) -> None:
    await store.create_job(new_job())
    recheck = utcnow() + HOUR

    wrong_attempt = await store.hold("job-1", 2, app_id="app", recheck_at=recheck)
    held = await store.hold("job-1", 1, app_id="app", recheck_at=recheck)

    assert wrong_attempt is None
    assert held is not None and held.status is JobStatus.QUEUED
    assert held.held_at is not None and held.announce_due_at == recheck
    due = utcnow() + timedelta(seconds=11)
    assert await store.release_held("other-app", due_at=due) == 0
    assert await store.release_held("app", due_at=due) == 1
    assert await store.release_held("app", due_at=due) == 0
    released = await store.get_job("job-1")
    assert released is not None and released.held_at is None
    assert released.announce_due_at == due
    assert await store.claim_attempt("job-1", 1, callback_token_hash="h", deadline_at=utcnow())
    claimed = await store.get_job("job-1")
    assert claimed is not None and claimed.held_at is None


async def test_a_claim_clears_a_hold_left_behind(store: JobStore) -> None:
    await store.create_job(new_job())
    assert await store.hold("job-1", 1, app_id="app", recheck_at=utcnow())

    assert await store.claim_attempt("job-1", 1, callback_token_hash="h", deadline_at=utcnow())

    claimed = await store.get_job("job-1")
    assert claimed is not None and claimed.held_at is None


async def test_the_first_redrive_answer_of_a_key_is_kept(store: JobStore) -> None:
    assert await store.redrive_answer("admin:k") is None

    first = await store.keep_redrive_answer("admin:k", {"redriven": ["a"]})
    second = await store.keep_redrive_answer("admin:k", {"redriven": []})

    assert first == second == {"redriven": ["a"]}
    assert await store.redrive_answer("admin:k") == {"redriven": ["a"]}


async def test_a_rejected_job_redriven_dies_again_only_for_its_own_failure(
    store: JobStore,
) -> None:
    """A job dead at once (a non-retryable failure) is redriven like any other."""
    await store.create_job(new_job())
    rejected = Failure(kind=FailureKind.REJECTED, message="bad", retryable=False)
    dead = await store.mark_dead("job-1", 1, rejected)
    assert dead is not None

    again = await store.redrive(dead, by="admin")

    assert again is not None and again.redrives[0].failure == rejected
    assert again.last_failure == rejected  # shown until the new run fails or succeeds
