"""The notifier against the real Kafka, store and SMTP sink."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from functools import partial
from pathlib import Path

from aiosmtpd.smtp import SMTP
from jobplane.events import (
    AttemptRecord,
    Failure,
    FailureKind,
    JobCompleted,
    JobDead,
)
from jobplane.kafka import Publisher
from jobplane.store import JobStore, NewJob, User, utcnow
from jobplane.topics import Topics
from jobplane_local import Mailbox
from jobplane_local.smtp_sink import MailboxHandler
from jobplane_notifier.config import Settings
from jobplane_notifier.main import serve

from tests.support import committed, eventually, free_port, running

from .conftest import register


async def create_job(store: JobStore, job_id: str, user: User) -> None:
    await store.create_job(
        NewJob(
            job_id=job_id,
            app_id=user.app_id,
            user_id=user.user_id,
            job_type="thumbnail",
            payload="{}",
            timeout_seconds=None,
            trace_id="trace",
        )
    )


def completed(job_id: str, user: User) -> JobCompleted:
    return JobCompleted(
        job_id=job_id,
        app_id=user.app_id,
        user_id=user.user_id,
        attempt=1,
        trace_id=f"trace-{job_id}",
        job_type="thumbnail",
        result=json.dumps({"thumbnails": ["a.png", "b.png"]}),
    )


def dead(job_id: str, user: User, attempts: int = 6) -> JobDead:
    t0 = utcnow() - timedelta(hours=1)
    history = tuple(
        AttemptRecord(
            attempt=n,
            dispatched_at=t0 + timedelta(minutes=n),
            ended_at=t0 + timedelta(minutes=n, seconds=3),
            failure=Failure(
                kind=FailureKind.HTTP_STATUS,
                message=f"HTTP 503 #{n}",
                retryable=True,
                http_status=503,
            ),
        )
        for n in range(1, attempts + 1)
    )
    return JobDead(
        job_id=job_id,
        app_id=user.app_id,
        user_id=user.user_id,
        attempt=attempts,
        trace_id=f"trace-{job_id}",
        job_type="face-analysis",
        reason=f"failed {attempts} attempts; last error: HTTP 503 #{attempts}",
        failure=history[-1].failure,
        attempts=history,
    )


async def test_completed_job_mails_the_user_once_in_their_language(
    settings: Settings,
    topics: Topics,
    store: JobStore,
    publisher: Publisher,
    mailbox: Mailbox,
    unique_id: str,
) -> None:
    _, user = await register(store, unique_id, language="ja")
    job_id = f"job-{unique_id}"
    await create_job(store, job_id, user)
    event = completed(job_id, user)
    async with running(serve(settings)):
        await publisher.publish(topics.completed, event)
        (mail,) = await mailbox.wait_for_recipient(user.email, within=20)
        await publisher.publish(topics.completed, event)  # a replay
        # One partition, one event at a time: once the marker's mail is here, the replay
        # was handled too.
        _, marker_user = await register(store, f"m{unique_id}")
        await publisher.publish(topics.completed, completed(f"marker-{unique_id}", marker_user))
        await mailbox.wait_for_recipient(marker_user.email, within=20)

    assert len(mailbox.to(user.email)) == 1
    assert mail.subject == "ジョブ「thumbnail」が完了しました"
    assert "正常に完了しました" in mail.text()
    assert f"https://jobs.example.com/status/{job_id}" in mail.text()
    assert mail.message["Message-ID"].endswith("@jobplane.test>")
    assert mail.message.get_body(preferencelist=("html",)) is not None
    assert mail.mail_from == "jobplane@jobplane.test"
    assert mail.message["X-Jobplane-Trace-Id"] == event.trace_id
    doc = await store.jobs.find_one({"_id": job_id})
    assert doc is not None and doc["mail"]["succeeded"]["state"] == "sent"
    assert doc["mail"]["succeeded"]["message_id"] == mail.message["Message-ID"].strip()
    job = await store.get_job(job_id)
    assert job is not None and job.notified_user_at is not None and job.notified_admins_at is None


async def test_dead_job_mails_the_user_and_alerts_each_admin_once(
    settings: Settings,
    topics: Topics,
    store: JobStore,
    publisher: Publisher,
    mailbox: Mailbox,
    unique_id: str,
) -> None:
    app_admin = f"app-admin-{unique_id}@example.com"
    ops = settings.admin_emails[0]
    # The app lists the platform admin too: still one alert for that address.
    _, user = await register(store, unique_id, app_admins=[app_admin, ops.upper()])
    job_id = f"job-{unique_id}"
    await create_job(store, job_id, user)
    event = dead(job_id, user)
    async with running(serve(settings)):
        await publisher.publish(topics.dead, event)
        (user_mail,) = await mailbox.wait_for_recipient(user.email, within=20)
        (ops_mail,) = await mailbox.wait_for_recipient(ops, within=20)
        (app_mail,) = await mailbox.wait_for_recipient(app_admin, within=20)
        await publisher.publish(topics.dead, event)  # a replay
        _, marker_user = await register(store, f"m{unique_id}")
        await publisher.publish(topics.completed, completed(f"marker-{unique_id}", marker_user))
        await mailbox.wait_for_recipient(marker_user.email, within=20)
        await asyncio.sleep(0.5)  # the marker is on another topic: let the replay finish too

    assert len(mailbox.to(user.email)) == 1
    assert len(mailbox.to(ops)) == 1
    assert len(mailbox.to(app_admin)) == 1
    assert "could not be completed" in user_mail.subject
    assert "after 6 attempts" in user_mail.text()
    for alert in (ops_mail, app_mail):
        assert alert.subject == f"[Jobplane] Job {job_id} of {user.app_id} is dead"
        text = alert.text()
        for n in range(1, 7):
            assert f"HTTP 503 #{n}" in text
        assert event.trace_id in text and user.user_id in text
    assert ops_mail.message["Message-ID"] != app_mail.message["Message-ID"]
    # The user's mail is recorded on the job, each alert in the notifications.
    sent = await store.notifications.count_documents({"job_id": job_id, "state": "sent"})
    assert sent == 2
    doc = await store.jobs.find_one({"_id": job_id})
    assert doc is not None and doc["mail"]["dead"]["state"] == "sent"
    job = await store.get_job(job_id)
    assert job is not None and job.notified_user_at and job.notified_admins_at


async def test_unregistered_user_gets_no_mail_but_admins_are_alerted(
    settings: Settings,
    topics: Topics,
    store: JobStore,
    publisher: Publisher,
    mailbox: Mailbox,
    unique_id: str,
) -> None:
    ghost = User(
        app_id=f"app-{unique_id}",
        user_id=f"ghost-{unique_id}",
        email=f"ghost-{unique_id}@example.com",
        language="en",
    )
    job_id = f"job-{unique_id}"
    ops = settings.admin_emails[0]
    async with running(serve(settings)):
        await publisher.publish(topics.dead, dead(job_id, ghost, attempts=1))
        (alert,) = await mailbox.wait_for_recipient(ops, within=20)
    assert "The user was NOT notified" in alert.text()
    assert mailbox.to(ghost.email) == []


async def test_smtp_down_commits_nothing_and_mails_exactly_once_when_back(
    settings: Settings,
    topics: Topics,
    store: JobStore,
    publisher: Publisher,
    unique_id: str,
    tmp_path: Path,
) -> None:
    port = free_port()
    down = settings.model_copy(update={"smtp_port": port, "admin_emails": []})
    _, user = await register(store, unique_id)
    job_id = f"job-{unique_id}"
    own_mailbox = Mailbox(tmp_path / "mail")
    async with running(serve(down)) as task:
        await publisher.publish(topics.completed, completed(job_id, user))
        await asyncio.sleep(3)  # the notifier tries and fails a few times meanwhile
        assert not task.done()
        assert own_mailbox.read() == []
        assert await store.notifications.count_documents({}) == 0
        # Nothing committed past the event (the loop may commit the position before it).
        assert (await committed(down, down.group_id, topics.completed)).get(0, 0) == 0

        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            partial(SMTP, MailboxHandler(own_mailbox.directory), hostname="test-sink"),
            host="127.0.0.1",
            port=port,
        )
        try:
            (mail,) = await own_mailbox.wait_for_recipient(user.email, within=40)

            async def event_committed() -> bool:
                return (await committed(down, down.group_id, topics.completed)).get(0) == 1

            await eventually(event_committed, 10, lambda: "the event was never committed")
            await asyncio.sleep(0.5)
        finally:
            server.close()
            await server.wait_closed()

    assert len(own_mailbox.read()) == 1
    assert mail.rcpt_tos == [user.email]
    # The job was never stored (an event straight from Kafka): recorded in notifications.
    record = await store.notifications.find_one({"_id": f"{job_id}:succeeded:{user.email}"})
    assert record is not None and record["state"] == "sent"
