"""Store commands per job on the happy path, counted with PyMongo's command monitoring:
the dispatcher (an accepted attempt) and the notifier (the success mail)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC

import pytest
from jobplane.kafka import Publisher
from jobplane.store import Document, JobStore, NewJob
from jobplane.topics import Topics
from jobplane_dispatcher.backend import BackendClient
from jobplane_dispatcher.config import Settings
from jobplane_dispatcher.dispatch import Dispatcher
from jobplane_local import Mailbox
from jobplane_local.testing import Infra
from jobplane_notifier.config import Settings as NotifierSettings
from jobplane_notifier.mailer import Mailer
from jobplane_notifier.notify import Notifier
from pymongo import AsyncMongoClient, monitoring

from tests.support import job_requested

from .conftest import register_app
from .http_stub import StubBackend

pytestmark = pytest.mark.timeout(120)


class CommandCounter(monitoring.CommandListener):
    def __init__(self) -> None:
        self.commands: list[tuple[str, str]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        collection = event.command.get(event.command_name)
        self.commands.append((event.command_name, str(collection)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def take(self) -> Counter[tuple[str, str]]:
        counts = Counter(self.commands)
        self.commands.clear()
        return counts


@pytest.fixture
async def counted(settings: Settings) -> AsyncIterator[tuple[JobStore, CommandCounter]]:
    """A job store whose every command is counted."""
    counter = CommandCounter()
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        settings.mongodb_uri, tz_aware=True, tzinfo=UTC, event_listeners=[counter]
    )
    try:
        job_store = JobStore.from_settings(client, settings)
        await job_store.prepare()  # as every service does at start-up
        counter.take()
        yield job_store, counter
    finally:
        await client.close()


async def test_store_commands_per_job_on_the_happy_path(
    settings: Settings,
    infra: Infra,
    store: JobStore,
    topics: Topics,
    publisher: Publisher,
    backend: StubBackend,
    counted: tuple[JobStore, CommandCounter],
    mailbox: Mailbox,
    unique_id: str,
) -> None:
    counted_store, counter = counted
    app_id = f"app-{unique_id}"
    await register_app(store, app_id, backend.url)
    notifier_settings = NotifierSettings(
        mongodb_uri=settings.mongodb_uri,
        mongodb_database=settings.mongodb_database,
        topic_prefix=settings.topic_prefix,
        smtp_host=infra.smtp_host,
        smtp_port=infra.smtp_port,
        admin_emails=[],
    )
    mailer = Mailer(notifier_settings)
    notifier = Notifier(counted_store, mailer, notifier_settings)
    dispatcher = Dispatcher(
        settings, counted_store, publisher, topics, BackendClient(settings), limits=None
    )
    report: list[str] = []
    try:
        for n in range(2):  # the first job fills the app and user caches, the second uses them
            event = job_requested(app_id, f"job-{unique_id}-{n}")
            await store.create_job(  # what the gateway stored
                NewJob(
                    job_id=event.job_id,
                    app_id=app_id,
                    user_id=event.user_id,
                    job_type=event.job_type,
                    payload=event.payload,
                    timeout_seconds=None,
                    trace_id=event.trace_id,
                )
            )
            counter.take()
            await dispatcher.dispatch(event)
            dispatched = counter.take()
            job = await store.complete(event.job_id, 1, json.dumps({"ok": n}))  # the callback
            assert job is not None
            counter.take()
            await notifier.notify(job.completed_event())
            notified = counter.take()
            report.append(
                f"job {n + 1}: dispatcher {sum(dispatched.values())} {dict(dispatched)}, "
                f"notifier {sum(notified.values())} {dict(notified)}"
            )
            jobs = "jobs"
            # The claim and mark_running: no document read back.
            assert dispatched[("update", jobs)] == 2
            assert notified[("update", jobs)] == 2  # the mail's claim, then "sent"
            if n == 1:
                assert sum(dispatched.values()) == 2
                assert sum(notified.values()) == 2
    finally:
        await mailer.aclose()
        await dispatcher.backend.aclose()
    print("\nstore commands per job:\n  " + "\n  ".join(report))
    assert len(mailbox.to(f"user-1@{app_id}.example.test")) == 2
