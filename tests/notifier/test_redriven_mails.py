"""A redriven job's mails: each run's outcome is mailed once (user and administrators),
and a replayed death of an earlier run mails nothing. Real store and SMTP sink."""

from __future__ import annotations

from jobplane.events import Failure, FailureKind
from jobplane.store import JobStore, utcnow
from jobplane_local import Mailbox
from jobplane_notifier.config import Settings
from jobplane_notifier.mailer import Mailer
from jobplane_notifier.notify import Notifier

from .conftest import register
from .test_notify import create_job, dead

FAILURE = Failure(kind=FailureKind.HTTP_STATUS, message="HTTP 503", retryable=True)


async def test_each_run_of_a_redriven_job_is_mailed_once(
    settings: Settings, store: JobStore, mailbox: Mailbox, unique_id: str
) -> None:
    _, user = await register(store, unique_id)
    admin = settings.admin_emails[0]
    job_id = f"job-{unique_id}"
    await create_job(store, job_id, user)
    assert await store.mark_dead(job_id, 1, FAILURE)
    mailer = Mailer(settings)
    notifier = Notifier(store, mailer, settings)
    try:
        await notifier.notify(dead(job_id, user, attempts=1))
        assert (len(mailbox.to(user.email)), len(mailbox.to(admin))) == (1, 1)

        mailed = await store.get_job(job_id)
        assert mailed is not None
        assert await store.redrive(mailed, by="admin")
        await notifier.notify(dead(job_id, user, attempts=1))  # the first run's, replayed
        assert (len(mailbox.to(user.email)), len(mailbox.to(admin))) == (1, 1)

        assert await store.claim_attempt(job_id, 2, callback_token_hash="h", deadline_at=utcnow())
        assert await store.mark_dead(job_id, 2, FAILURE, run_start_attempt=2)
        for _ in range(2):
            await notifier.notify(dead(job_id, user, attempts=2))
    finally:
        await mailer.aclose()
    assert (len(mailbox.to(user.email)), len(mailbox.to(admin))) == (2, 2)
    job = await store.get_job(job_id)
    assert job is not None and job.mail_states == {"dead": "sent"}
    assert job.redrives[0].mail_states == {"dead": "sent"}
    alerts = await store.notifications_of(job_id)  # one alert per run, both of the job
    assert sorted(a.state for a in alerts) == ["sent", "sent"]
