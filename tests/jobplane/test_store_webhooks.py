"""The webhook delivery record on the job (``webhook.<outcome>``), against the real store:
one winner per claim, a failed try owes the outcome again at its retry time, a retry is
claimable only once due, a stale claim is taken over."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from jobplane.store import JobStore, MailClaim, utcnow

from tests.jobplane.test_store import new_job


async def claim(store: JobStore, claim_id: str, stale_after: float = 60) -> tuple[MailClaim, int]:
    return await store.claim_webhook(
        "job-1",
        "succeeded",
        claim_id=claim_id,
        stale_before=utcnow() - timedelta(seconds=stale_after),
    )


async def test_one_claim_wins_and_a_sent_delivery_is_done(store: JobStore) -> None:
    await store.create_job(new_job())

    results = await asyncio.gather(*(claim(store, f"c{n}") for n in range(8)))

    assert [r for r, _ in results].count(MailClaim.CLAIMED) == 1
    winner = next(f"c{n}" for n, (r, _) in enumerate(results) if r is MailClaim.CLAIMED)
    assert {attempts for r, attempts in results if r is MailClaim.CLAIMED} == {1}
    assert not await store.settle_webhook("job-1", "succeeded", claim_id="not-mine")
    assert await store.settle_webhook("job-1", "succeeded", claim_id=winner)
    job = await store.get_job("job-1")
    assert job is not None and job.webhooks["succeeded"].state == "sent"
    assert job.announce_due_at is None
    assert (await claim(store, "later"))[0] is MailClaim.DONE
    no_job = await store.claim_webhook("nothing", "dead", claim_id="x", stale_before=utcnow())
    assert no_job == (MailClaim.NO_RECORD, 0)


async def test_a_failed_try_is_retried_when_due_only(store: JobStore) -> None:
    await store.create_job(new_job())
    assert (await claim(store, "first")) == (MailClaim.CLAIMED, 1)
    retry_at = utcnow() + timedelta(seconds=1)

    assert await store.settle_webhook(
        "job-1", "succeeded", claim_id="first", error="HTTP 500", retry_at=retry_at
    )

    job = await store.get_job("job-1")
    assert job is not None
    delivery = job.webhooks["succeeded"]
    assert (delivery.state, delivery.attempts, delivery.last_error) == ("retrying", 1, "HTTP 500")
    # The job owes its outcome event again at the retry time: the relay brings it back.
    assert job.announce_due_at == retry_at
    assert (await claim(store, "early"))[0] is MailClaim.DONE
    await asyncio.sleep(1.1)
    assert (await claim(store, "due")) == (MailClaim.CLAIMED, 2)
    assert await store.settle_webhook("job-1", "succeeded", claim_id="due", error="HTTP 503")
    job = await store.get_job("job-1")
    assert job is not None and job.webhooks["succeeded"].state == "failed"
    assert (await claim(store, "never"))[0] is MailClaim.DONE


async def test_a_stale_claim_is_taken_over(store: JobStore) -> None:
    await store.create_job(new_job())
    assert (await claim(store, "died"))[0] is MailClaim.CLAIMED
    assert (await claim(store, "fresh"))[0] is MailClaim.BUSY

    assert (await claim(store, "takeover", stale_after=-1)) == (MailClaim.CLAIMED, 2)
    assert not await store.settle_webhook("job-1", "succeeded", claim_id="died")


async def test_a_delivery_put_off_is_not_counted_and_owed_later(store: JobStore) -> None:
    await store.create_job(new_job())
    until = utcnow() + timedelta(seconds=1)

    assert await store.defer_webhook(
        "job-1", "succeeded", until=until, reason="not tried", stale_before=utcnow()
    )

    job = await store.get_job("job-1")
    assert job is not None and job.announce_due_at == until
    delivery = job.webhooks["succeeded"]
    assert (delivery.state, delivery.attempts, delivery.last_error) == ("retrying", 0, "not tried")
    # Not due yet: neither put off again nor claimed; once due, claimed as the first try.
    assert not await store.defer_webhook(
        "job-1", "succeeded", until=until, reason="again", stale_before=utcnow()
    )
    assert (await claim(store, "early"))[0] is MailClaim.DONE
    await asyncio.sleep(1.1)
    assert (await claim(store, "due")) == (MailClaim.CLAIMED, 1)
    # A live claim is nobody's to put off.
    assert not await store.defer_webhook(
        "job-1", "succeeded", until=until, reason="x", stale_before=utcnow() - timedelta(minutes=1)
    )
