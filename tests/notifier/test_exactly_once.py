"""Exactly one e-mail per outcome and recipient, and no mail that can stop the others:
the notifier against the real Kafka, store and SMTP servers."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from jobplane.events import JobDead
from jobplane.kafka import Publisher
from jobplane.store import JobStore, User, utcnow
from jobplane.store import connect as connect_mongo
from jobplane.topics import Topics
from jobplane_local import Mailbox
from jobplane_notifier.config import Settings
from jobplane_notifier.mailer import Mailer, domain_of, message_id
from jobplane_notifier.main import serve
from jobplane_notifier.notify import Notifier

from tests.support import read_events, running

from .conftest import register
from .smtp_server import Rules, smtp_server
from .test_notify import completed, create_job, dead

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def second_store(settings: Settings) -> AsyncIterator[JobStore]:
    """The same database through another client, as a second notifier process has it."""
    client = connect_mongo(settings)
    try:
        yield JobStore.from_settings(client, settings)
    finally:
        await client.close()


async def test_ten_concurrent_deliveries_to_two_notifiers_send_one_mail(
    settings: Settings,
    store: JobStore,
    second_store: JobStore,
    mailbox: Mailbox,
    unique_id: str,
) -> None:
    _, user = await register(store, unique_id)
    job_id = f"job-{unique_id}"
    await create_job(store, job_id, user)
    event = completed(job_id, user)
    first, second = Mailer(settings), Mailer(settings)
    notifiers = [Notifier(store, first, settings), Notifier(second_store, second, settings)]
    try:
        await asyncio.gather(*(notifiers[n % 2].notify(event) for n in range(10)))
    finally:
        await first.aclose()
        await second.aclose()
    assert len(mailbox.to(user.email)) == 1
    doc = await store.jobs.find_one({"_id": job_id})
    assert doc is not None and doc["mail"]["succeeded"]["state"] == "sent"


async def test_a_claim_left_by_a_crashed_sender_is_taken_over_with_the_same_message_id(
    settings: Settings, store: JobStore, mailbox: Mailbox, unique_id: str
) -> None:
    quick = settings.model_copy(update={"claim_timeout_seconds": 1.0, "smtp_timeout_seconds": 0.5})
    _, user = await register(store, unique_id)
    job_id = f"job-{unique_id}"
    await create_job(store, job_id, user)
    mail_id = message_id(job_id, "succeeded", user.email, domain_of(quick.mail_from))
    # A sender claimed the mail, then died (before or after the SMTP server took it).
    claimed = await store.claim_user_mail(
        job_id, "succeeded", claim_id="crashed", message_id=mail_id, stale_before=utcnow()
    )
    assert claimed.value == "claimed"
    mailer = Mailer(quick)
    notifier = Notifier(store, mailer, quick)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        # The claim is fresh: the handler waits until it is stale, then takes it over.
        await notifier.notify(completed(job_id, user))
    finally:
        await mailer.aclose()
    assert loop.time() - started >= 0.9
    (mail,) = mailbox.to(user.email)
    assert mail.message["Message-ID"].strip() == mail_id
    doc = await store.jobs.find_one({"_id": job_id})
    assert doc is not None
    assert doc["mail"]["succeeded"]["state"] == "sent"
    assert doc["mail"]["succeeded"]["claim_id"] != "crashed"


async def test_a_refused_recipient_goes_to_job_dead_and_stops_no_other_mail(
    settings: Settings,
    topics: Topics,
    store: JobStore,
    publisher: Publisher,
    unique_id: str,
    tmp_path: Path,
) -> None:
    _, refused = await register(store, f"r{unique_id}")
    _, broken = await register(store, f"b{unique_id}")
    _, fine = await register(store, f"f{unique_id}")
    # An address stored before the gateway validated them: no header can carry it.
    broken = dataclasses.replace(broken, email=f"0@0\x1e{unique_id}")
    await store.upsert_user(broken)
    rules = Rules(refuse={refused.email})
    async with smtp_server(tmp_path / "mail", rules) as smtp:
        own = settings.model_copy(update={"smtp_port": smtp.port})
        async with running(serve(own)):
            for user in (refused, broken, fine):
                await publisher.publish(topics.completed, completed(f"job-{user.user_id}", user))
            await smtp.mailbox.wait_for_recipient(fine.email, within=30)
            dead_letters = await read_events(
                own,
                topics.dead,
                JobDead,
                until=lambda events: len(events) >= 2,
                timeout=30,
            )
            # Each dead letter alerts the administrators, and only them.
            alerts = await smtp.mailbox.wait_for(
                lambda m: settings.admin_emails[0] in m.rcpt_tos, count=2, within=30
            )
    reasons = sorted(d.reason for d in dead_letters)
    assert "550" in reasons[1] and refused.email in reasons[1]
    assert "cannot be built" in reasons[0]
    assert {d.job_id for d in dead_letters} == {f"job-{refused.user_id}", f"job-{broken.user_id}"}
    assert smtp.mailbox.to(refused.email) == []
    assert smtp.mailbox.to(broken.email) == []
    assert all("could not be handled" in alert.subject for alert in alerts)
    doc = await store.jobs.find_one({"_id": f"job-{refused.user_id}"})
    assert doc is None  # never stored: its record is in notifications
    record = await store.notifications.find_one(
        {"_id": f"job-{refused.user_id}:succeeded:{refused.email}"}
    )
    assert record is not None and record["state"] == "failed"


async def test_a_header_value_with_line_breaks_still_gets_its_mail_out(
    settings: Settings, store: JobStore, mailbox: Mailbox, unique_id: str
) -> None:
    _, user = await register(store, unique_id)
    job_id = f"job-{unique_id}"
    event = dataclasses.replace(completed(job_id, user), job_type="thumb\x1cnail\u2028x")
    mailer = Mailer(settings)
    try:
        await Notifier(store, mailer, settings).notify(event)
    finally:
        await mailer.aclose()
    (mail,) = mailbox.to(user.email)
    assert "thumb nail x" in mail.subject


async def test_a_refused_alert_of_a_dead_job_stops_no_other_mail_and_loops_nowhere(
    settings: Settings,
    topics: Topics,
    store: JobStore,
    publisher: Publisher,
    unique_id: str,
    tmp_path: Path,
) -> None:
    good, bad = f"ops-{unique_id}@example.com", f"gone-{unique_id}@example.com"
    _, user = await register(store, unique_id)
    job_id = f"job-{unique_id}"
    await create_job(store, job_id, user)
    async with smtp_server(tmp_path / "mail", Rules(refuse={bad})) as smtp:
        own = settings.model_copy(update={"smtp_port": smtp.port, "admin_emails": [bad, good]})
        async with running(serve(own)):
            await publisher.publish(topics.dead, dead(job_id, user))
            await smtp.mailbox.wait_for_recipient(good, within=30)
            await smtp.mailbox.wait_for_recipient(user.email, within=30)
            events = await read_events(
                own, topics.dead, JobDead, until=lambda e: len(e) >= 1, settle=3.0
            )
    # The refused alert came first and stopped neither the user's mail nor the other alert;
    # a job.dead event is never dead-lettered again (no loop).
    assert len(events) == 1
    assert len(smtp.mailbox.to(user.email)) == 1
    assert len(smtp.mailbox.to(good)) == 1
    refused = await store.notifications.find_one({"_id": f"{job_id}:alert:{bad}"})
    assert refused is not None and refused["state"] == "failed" and "550" in refused["reason"]


async def test_a_busy_server_is_tried_again_and_mails_once(
    settings: Settings,
    topics: Topics,
    store: JobStore,
    publisher: Publisher,
    unique_id: str,
    tmp_path: Path,
) -> None:
    _, user = await register(store, unique_id)
    async with smtp_server(tmp_path / "mail", Rules(busy={user.email: 2})) as smtp:
        own = settings.model_copy(update={"smtp_port": smtp.port, "admin_emails": []})
        async with running(serve(own)):
            await publisher.publish(topics.completed, completed(f"job-{unique_id}", user))
            await smtp.mailbox.wait_for_recipient(user.email, within=30)
            await asyncio.sleep(1.0)
    assert len(smtp.mailbox.to(user.email)) == 1
    assert smtp.rules.busy[user.email] == 0


async def test_smtp_connections_are_reused_across_mails(
    settings: Settings,
    topics: Topics,
    store: JobStore,
    publisher: Publisher,
    unique_id: str,
    tmp_path: Path,
) -> None:
    users: list[User] = [(await register(store, f"{n}{unique_id}"))[1] for n in range(5)]
    async with smtp_server(tmp_path / "mail", Rules()) as smtp:
        own = settings.model_copy(update={"smtp_port": smtp.port})
        async with running(serve(own)):
            for user in users:
                await publisher.publish(topics.completed, completed(f"job-{user.user_id}", user))
            for user in users:
                await smtp.mailbox.wait_for_recipient(user.email, within=30)
    # One event at a time (the test settings): one connection carried every mail.
    assert smtp.rules.connections == 1
