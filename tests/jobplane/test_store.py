"""The job store's guarded transitions against the real document store."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import datetime, timedelta

import pytest
from jobplane import indexes
from jobplane.config import CommonSettings
from jobplane.events import Failure, FailureKind
from jobplane.jobs import JobStatus
from jobplane.store import (
    AlreadyExistsError,
    JobStore,
    MailClaim,
    MailState,
    NewJob,
    User,
    connect,
    utcnow,
)

FAILURE = Failure(kind=FailureKind.HTTP_STATUS, message="boom", retryable=True, http_status=503)


def new_job(
    job_id: str = "job-1", *, app_id: str = "app", idempotency_key: str | None = None
) -> NewJob:
    return NewJob(
        job_id=job_id,
        app_id=app_id,
        user_id="u1",
        job_type="thumbnail",
        payload='{"x": 1}',
        timeout_seconds=None,
        trace_id="trace-1",
        idempotency_key=idempotency_key,
    )


async def test_create_job_is_idempotent(store: JobStore) -> None:
    job, created = await store.create_job(new_job())
    again, created_again = await store.create_job(new_job())

    assert created and not created_again
    assert job == again
    assert job.status is JobStatus.QUEUED
    assert job.attempt == 1


async def test_create_job_with_an_idempotency_key_the_app_used_returns_that_job(
    store: JobStore,
) -> None:
    job, created = await store.create_job(new_job(idempotency_key="k"))
    again, created_again = await store.create_job(new_job("job-2", idempotency_key="k"))
    other, created_other = await store.create_job(
        new_job("job-3", app_id="other-app", idempotency_key="k")
    )

    assert created and not created_again and created_other
    assert job == again
    assert (job.status, job.attempt, job.idempotency_key) == (JobStatus.QUEUED, 1, "k")
    assert other.job_id == "job-3"


async def test_claim_happens_once_per_attempt(store: JobStore) -> None:
    await store.create_job(new_job())
    deadline = utcnow() + timedelta(minutes=5)

    claimed = await store.claim_attempt("job-1", 1, callback_token_hash="h1", deadline_at=deadline)
    replay = await store.claim_attempt("job-1", 1, callback_token_hash="h2", deadline_at=deadline)

    assert claimed and not replay
    claimed_job = await store.get_job("job-1")
    assert claimed_job is not None and claimed_job.status is JobStatus.DISPATCHED
    attempt = claimed_job.attempt_info(1)
    assert attempt is not None
    assert attempt.callback_token_hash == "h1"
    assert attempt.deadline_at == deadline


async def test_full_lifecycle_with_a_retry(store: JobStore) -> None:
    await store.create_job(new_job())
    deadline = utcnow() + timedelta(minutes=5)
    await store.claim_attempt("job-1", 1, callback_token_hash="h1", deadline_at=deadline)
    assert await store.mark_running("job-1", 1)

    due = utcnow() + timedelta(seconds=30)
    retried = await store.schedule_retry("job-1", 1, FAILURE, due)
    assert retried is not None
    assert (retried.status, retried.attempt, retried.next_attempt_at) == (
        JobStatus.RETRY_SCHEDULED,
        2,
        due,
    )
    # A late success for attempt 1 changes nothing now.
    assert await store.complete("job-1", 1, '{"late": true}') is None
    # A replayed failure of attempt 1 changes nothing either.
    assert await store.schedule_retry("job-1", 1, FAILURE, due) is None

    await store.claim_attempt("job-1", 2, callback_token_hash="h2", deadline_at=deadline)
    done = await store.complete("job-1", 2, '{"ok": true}')
    assert done is not None
    assert done.status is JobStatus.SUCCEEDED
    assert done.result == '{"ok": true}'
    assert [a.number for a in done.attempts] == [1, 2]
    assert done.attempts[0].failure == FAILURE
    assert done.attempts[1].failure is None and done.attempts[1].ended_at is not None
    assert await store.mark_dead("job-1", 2, FAILURE) is None


async def test_overdue_attempts_are_reported_once(store: JobStore) -> None:
    await store.create_job(new_job("late"))
    await store.create_job(new_job("on-time"))
    past, future = utcnow() - timedelta(seconds=1), utcnow() + timedelta(minutes=5)
    await store.claim_attempt("late", 1, callback_token_hash="h", deadline_at=past)
    await store.claim_attempt("on-time", 1, callback_token_hash="h", deadline_at=future)

    assert [j.job_id for j in await store.overdue_attempts(utcnow())] == ["late"]
    assert await store.report_failure("late", 1, FAILURE) is not None
    assert await store.overdue_attempts(utcnow()) == []
    # The first report wins: a second one (a timeout after a failure) matches nothing.
    assert await store.report_failure("late", 1, FAILURE) is None


async def test_apps_users_and_notifications(store: JobStore) -> None:
    app = await store.create_app(
        app_id="app",
        backend_url="http://127.0.0.1:1/jobs",
        default_timeout_seconds=60,
        admin_emails=["a@example.com"],
        api_key_hash="hash",
        max_concurrency=4,
    )
    assert await store.get_app("app") == app
    with pytest.raises(AlreadyExistsError):
        await store.create_app(
            app_id="app",
            backend_url="http://x",
            default_timeout_seconds=1,
            admin_emails=[],
            api_key_hash="h",
            max_concurrency=1,
        )

    assert await store.upsert_user(User("app", "u1", "u1@example.com", "ja")) is True
    assert await store.upsert_user(User("app", "u1", "new@example.com", "en")) is False
    assert await store.get_user("app", "u1") == User("app", "u1", "new@example.com", "en")
    assert await store.get_user("other", "u1") is None


async def test_a_notification_is_claimed_once_then_settled(store: JobStore) -> None:
    def claim(claim_id: str, stale_before: datetime) -> Awaitable[MailClaim]:
        return store.claim_notification(
            "j:alert:a@example.com",
            job_id="j",
            recipient="a@example.com",
            kind="admin_alert",
            claim_id=claim_id,
            message_id="<m>",
            stale_before=stale_before,
        )

    long_ago = utcnow() - timedelta(minutes=5)
    results = await asyncio.gather(*(claim(f"c{n}", long_ago) for n in range(8)))
    assert results.count(MailClaim.CLAIMED) == 1
    assert set(results) == {MailClaim.CLAIMED, MailClaim.BUSY}
    winner = next(f"c{n}" for n, r in enumerate(results) if r is MailClaim.CLAIMED)
    # A claim older than the claim timeout is taken over; the old sender cannot settle it.
    assert await claim("late", utcnow() + timedelta(seconds=1)) is MailClaim.CLAIMED
    assert not await store.settle_notification(
        "j:alert:a@example.com", MailState.SENT, claim_id=winner
    )
    assert await store.settle_notification("j:alert:a@example.com", MailState.SENT, claim_id="late")
    assert await claim("again", utcnow() + timedelta(seconds=1)) is MailClaim.DONE


async def test_the_users_mail_is_claimed_on_the_job(store: JobStore) -> None:
    await store.create_job(new_job())
    await store.jobs.update_one({"_id": "job-1"}, {"$set": {"announce_due_at": utcnow()}})

    def claim(claim_id: str) -> Awaitable[MailClaim]:
        return store.claim_user_mail(
            "job-1", "succeeded", claim_id=claim_id, message_id="<m>", stale_before=utcnow()
        )

    results = await asyncio.gather(*(claim(f"c{n}") for n in range(8)))
    assert results.count(MailClaim.CLAIMED) == 1
    winner = next(f"c{n}" for n, r in enumerate(results) if r is MailClaim.CLAIMED)
    assert await store.settle_user_mail("job-1", "succeeded", MailState.SENT, claim_id=winner)
    doc = await store.jobs.find_one({"_id": "job-1"})
    assert doc is not None and "announce_due_at" not in doc
    assert doc["mail"]["succeeded"]["state"] == "sent" and doc["notified_user_at"]
    assert await claim("again") is MailClaim.DONE
    assert (
        await store.claim_user_mail(
            "nothing", "dead", claim_id="x", message_id="<m>", stale_before=utcnow()
        )
        is MailClaim.NO_RECORD
    )


async def test_concurrent_claims_have_exactly_one_winner(store: JobStore) -> None:
    for i in range(10):
        await store.create_job(new_job(f"race-{i}"))
        deadline = utcnow() + timedelta(minutes=5)
        results = await asyncio.gather(
            *(
                store.claim_attempt(
                    f"race-{i}", 1, callback_token_hash=f"h{n}", deadline_at=deadline
                )
                for n in range(4)
            )
        )
        assert sum(results) == 1


async def test_concurrent_changes_of_one_job_lose_nothing(store: JobStore) -> None:
    await store.create_job(new_job())
    await store.claim_attempt(
        "job-1", 1, callback_token_hash="h", deadline_at=utcnow() + timedelta(minutes=5)
    )
    # The backend's callback can overtake the dispatcher's "accepted" bookkeeping.
    await asyncio.gather(
        store.mark_running("job-1", 1),
        store.complete("job-1", 1, '{"ok": 1}'),
        store.mark_admins_notified("job-1"),
    )
    job = await store.get_job("job-1")
    assert job is not None
    assert job.status is JobStatus.SUCCEEDED
    assert job.result == '{"ok": 1}'
    assert job.notified_admins_at is not None


async def test_prepare_creates_every_index_and_is_idempotent(store: JobStore) -> None:
    await store.prepare()  # the fixture prepared it once already: nothing changes, no error
    for index in indexes.INDEXES:
        info = await store.db[index.collection].index_information()
        assert index.name in info, f"{index.collection}: {index.name} missing"
        assert info[index.name]["key"] == list(index.keys)
        assert info[index.name].get("unique", False) == index.unique
        assert info[index.name].get("partialFilterExpression") == index.partial_filter
    # Keep-forever is the default: no TTL index.
    assert indexes.RETENTION_INDEX not in await store.jobs.index_information()


async def test_prepare_drops_the_retired_indexes(store: JobStore) -> None:
    for index in indexes.RETIRED_INDEXES:  # as an earlier version left them
        await store.db[index.collection].create_index(list(index.keys), **index.options())
    await store.prepare()
    for index in indexes.RETIRED_INDEXES:
        assert index.name not in await store.db[index.collection].index_information()
    await store.prepare()  # nothing left to drop: no error


async def test_retention_is_a_ttl_index_on_finished_at_that_follows_the_setting(
    settings: CommonSettings,
) -> None:
    client = connect(settings)
    try:

        async def prepared(days: int) -> dict[str, object] | None:
            store = JobStore.from_settings(
                client, settings.model_copy(update={"job_retention_days": days})
            )
            await store.prepare()
            info = await store.jobs.index_information()
            return info.get(indexes.RETENTION_INDEX)

        ttl = await prepared(30)
        assert ttl is not None
        assert ttl["key"] == [("finished_at", 1)]
        assert ttl["expireAfterSeconds"] == 30 * 86_400
        assert await prepared(30) == ttl  # idempotent

        changed = await prepared(7)  # a changed setting changes the index in place
        assert changed is not None
        assert changed["expireAfterSeconds"] == 7 * 86_400

        assert await prepared(0) is None  # back to keeping every job
    finally:
        await client.close()


def test_retention_setting() -> None:
    assert CommonSettings().job_retention_days == 0
    assert indexes.retention_index(0) is None
    index = indexes.retention_index(90)
    assert index is not None
    assert index.options() == {"name": "finished_at_1", "expireAfterSeconds": 90 * 86_400}
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        CommonSettings(job_retention_days=-1)


async def test_the_relays_backoff_starts_over_with_each_new_debt(store: JobStore) -> None:
    await store.create_job(new_job(), announce_grace=timedelta(0))
    deadline = utcnow() + timedelta(minutes=5)
    # The first job.requested was relayed twice (say Kafka was away)...
    for _ in range(2):
        (job,) = await store.due_announcements(utcnow() + timedelta(hours=1), 10)
        assert await store.postpone_announcement(job, utcnow())
    (job,) = await store.due_announcements(utcnow() + timedelta(hours=1), 10)
    assert job.announce_relays == 2
    # ...then the attempt ran and failed: the retry's job.requested is a new debt, whose
    # relay waits the grace again, not four times it.
    await store.claim_attempt("job-1", 1, callback_token_hash="h1", deadline_at=deadline)
    retried = await store.schedule_retry("job-1", 1, FAILURE, utcnow())
    assert retried is not None
    assert retried.announce_relays == 0
