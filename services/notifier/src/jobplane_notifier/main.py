"""The notifier: e-mail job outcomes to users and dead jobs to administrators."""

from __future__ import annotations

import httpx
from jobplane import metrics, service, tracing
from jobplane.connections import connect, consume
from jobplane.events import Event, JobCompleted, JobDead

from jobplane_notifier.config import Settings
from jobplane_notifier.mailer import Mailer
from jobplane_notifier.notify import Notifier
from jobplane_notifier.webhooks import WebhookSender


async def serve(settings: Settings) -> None:
    """Consume job.completed and job.dead until cancelled."""
    with (
        tracing.traced("notifier"),
        metrics.exported(settings.metrics_port, settings.metrics_host),
    ):
        await _serve(settings)


async def _serve(settings: Settings) -> None:
    async with connect(settings, "jobplane-notifier") as conns:
        mailer = Mailer(settings)
        http = httpx.AsyncClient(follow_redirects=False)
        try:
            webhooks = WebhookSender(conns.store, settings, http)
            notifier = Notifier(conns.store, mailer, settings, webhooks)
            topics = conns.topics
            expected: dict[str, type[Event]] = {
                topics.completed: JobCompleted,
                topics.dead: JobDead,
            }
            await consume(
                conns,
                settings.group_id,
                [topics.completed, topics.dead],
                expected.__getitem__,
                notifier.handle,
                concurrency=settings.concurrency,
            )
        finally:
            await http.aclose()
            await mailer.aclose()


def run() -> None:
    settings = Settings()
    service.run("notifier", serve(settings), settings.log_level)
