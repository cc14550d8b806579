"""``job.completed`` / ``job.dead`` → e-mails to the user and, for dead jobs, to admins.

Exactly one e-mail per job outcome per recipient: each send is recorded in the store's
``notifications`` collection under ``<job_id>:<outcome>:<recipient>`` and skipped when a
record exists. An SMTP error propagates, so the event loop retries the event later without
committing it; recipients already served are skipped on the retry.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from jobplane.events import Event, JobCompleted, JobDead
from jobplane.kafka import PermanentError, Record
from jobplane.logs import fields
from jobplane.store import JobStore

from jobplane_notifier.config import Settings
from jobplane_notifier.mailer import Mail, Mailer, message_id
from jobplane_notifier.templates import (
    MailKind,
    alert_context,
    failure_context,
    is_undecodable,
    render,
    success_context,
)

log = logging.getLogger(__name__)

# Outcomes in notification keys. A dead job's user mail and its admin alert are two
# different notifications, even when the user is an administrator too.
SUCCEEDED = "succeeded"
DEAD = "dead"
ALERT = "alert"


def notification_key(job_id: str, outcome: str, recipient: str) -> str:
    return f"{job_id}:{outcome}:{recipient.lower()}"


def unique_addresses(addresses: Iterable[str]) -> list[str]:
    """Addresses in order, without blanks and case-insensitive duplicates."""
    seen: set[str] = set()
    result: list[str] = []
    for address in addresses:
        address = address.strip()
        if address and address.lower() not in seen:
            seen.add(address.lower())
            result.append(address)
    return result


class Notifier:
    def __init__(self, store: JobStore, mailer: Mailer, settings: Settings) -> None:
        self.store = store
        self.mailer = mailer
        self.settings = settings

    async def handle(self, event: Event, record: Record) -> None:
        if isinstance(event, JobCompleted):
            await self.job_completed(event)
        elif isinstance(event, JobDead):
            await self.job_dead(event)
        else:
            raise PermanentError(f"the notifier does not handle {type(event).__name__}")

    async def job_completed(self, event: JobCompleted) -> None:
        user = await self.store.get_user(event.app_id, event.user_id)
        if user is None:
            log.warning(
                "user is not registered: no success mail",
                extra=fields(app_id=event.app_id, user_id=event.user_id),
            )
        else:
            context = success_context(event, self.settings.status_page_url)
            await self._deliver(
                event.job_id,
                SUCCEEDED,
                user.email,
                MailKind.USER_SUCCESS,
                user.language,
                context,
                event.trace_id,
            )
        await self.store.mark_notified(event.job_id, user=user is not None, admins=False)

    async def job_dead(self, event: JobDead) -> None:
        undecodable = is_undecodable(event)
        # A dead letter may carry no job id: its event id stands for it in the keys.
        subject_id = event.job_id if event.job_id and not undecodable else f"event-{event.event_id}"

        user_notified = False
        user_problem = ""
        if undecodable:
            user_problem = "the event could not be decoded"
        else:
            user = await self.store.get_user(event.app_id, event.user_id)
            if user is None:
                user_problem = f"user {event.user_id!r} of app {event.app_id!r} is not registered"
                log.warning(
                    "user is not registered: no failure mail",
                    extra=fields(app_id=event.app_id, user_id=event.user_id),
                )
            else:
                context = failure_context(event, self.settings.status_page_url)
                await self._deliver(
                    subject_id,
                    DEAD,
                    user.email,
                    MailKind.USER_FAILURE,
                    user.language,
                    context,
                    event.trace_id,
                )
                user_notified = True

        admins = list(self.settings.admin_emails)
        if event.app_id:
            app = await self.store.get_app(event.app_id)
            if app is not None:
                admins.extend(app.admin_emails)
        recipients = unique_addresses(admins)
        if not recipients:
            log.error("dead job but no administrator address is configured")
        alert = alert_context(
            event,
            status_page_url=self.settings.status_page_url,
            user_notified=user_notified,
            user_problem=user_problem,
        )
        for admin in recipients:
            await self._deliver(
                subject_id, ALERT, admin, MailKind.ADMIN_ALERT, "en", alert, event.trace_id
            )

        if not undecodable:
            await self.store.mark_notified(
                event.job_id, user=user_notified, admins=bool(recipients)
            )

    async def _deliver(
        self,
        job_id: str,
        outcome: str,
        recipient: str,
        kind: MailKind,
        language: str,
        context: dict[str, Any],
        trace_id: str,
    ) -> None:
        key = notification_key(job_id, outcome, recipient)
        if await self.store.notification_sent(key):
            log.info("already notified", extra=fields(key=key))
            return
        subject, text, html = render(kind, language, context)
        mail = Mail(
            to=recipient,
            subject=subject,
            text=text,
            html=html,
            message_id=message_id(job_id, outcome, recipient, self.mailer.domain),
            headers={
                "X-Jobplane-Job-Id": job_id,
                "X-Jobplane-Outcome": outcome,
                "X-Jobplane-Trace-Id": trace_id,
            },
        )
        await self.mailer.send(mail)
        await self.store.record_notification(
            key=key, job_id=job_id, recipient=recipient, kind=kind.value, message_id=mail.message_id
        )
