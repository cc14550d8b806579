"""The notifier: e-mail job outcomes to users and dead jobs to administrators."""

from __future__ import annotations

from jobplane import service
from jobplane.connections import connect, consume
from jobplane.events import Event, JobCompleted, JobDead

from jobplane_notifier.config import Settings
from jobplane_notifier.mailer import Mailer
from jobplane_notifier.notify import Notifier


async def serve(settings: Settings) -> None:
    """Consume job.completed and job.dead until cancelled."""
    async with connect(settings, "jobplane-notifier") as conns:
        mailer = Mailer(settings)
        try:
            notifier = Notifier(conns.store, mailer, settings)
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
            await mailer.aclose()


def run() -> None:
    settings = Settings()
    service.run("notifier", serve(settings), settings.log_level)
