"""``job.completed`` / ``job.dead`` → e-mails to the user and, for dead jobs, to admins.

Exactly one e-mail per outcome and recipient, under duplicate events, concurrent handling
and crashes (see ``jobplane.store``'s notifications): each mail is claimed in the store by
one guarded write, sent, then marked sent under the claim. The user's mail is recorded on
the job (``mail.<outcome>``; its claim also clears the owed event), every other mail in the
``notifications`` collection. No claim (the store is down), no send: the event is retried.
A claim held by another sender makes the handler wait until it is settled (nothing to do) or
stale (taken over).

The one window left: a crash after the SMTP server accepted a mail and before "sent" was
written. The claim then goes stale after ``claim_timeout_seconds`` and the mail is sent
again, with the same Message-ID, so the receiving side can recognise the repeat.

A mail refused for good (an address or header that cannot be sent, 5xx from the server) is
recorded as failed and stops nothing: the other recipients are still served, then the event
goes to ``job.dead`` with the reason (``PermanentError``), where its dead letter alerts the
administrators (a ``job.dead`` event is never dead-lettered again: the event loop logs it).
A dead letter says nothing about its job's outcome: it alerts the administrators only.

An app with a webhook URL is told each outcome too (``jobplane_notifier.webhooks``), after
the user's mail is settled.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, Protocol

from jobplane import metrics, tracing
from jobplane.events import Event, JobCompleted, JobDead
from jobplane.kafka import PermanentError, Record
from jobplane.logs import fields
from jobplane.results_links import results_link
from jobplane.store import JobStore, MailClaim, MailState, RunState, utcnow
from jobplane.tracing import SpanKind

from jobplane_notifier.config import Settings
from jobplane_notifier.mailer import Mail, Mailer, message_id
from jobplane_notifier.smtp import MailRefusedError, SendFailedError
from jobplane_notifier.templates import (
    MailKind,
    alert_context,
    failure_context,
    is_dead_letter,
    render,
    status_link,
    success_context,
)
from jobplane_notifier.webhooks import WebhookSender

log = logging.getLogger(__name__)

# Outcomes in notification keys. A dead job's user mail and its admin alert are two
# different notifications, even when the user is an administrator too.
SUCCEEDED = "succeeded"
DEAD = "dead"
ALERT = "alert"

# How long recording "sent" is retried in place at most between two tries: the mail is out,
# so the record must not be lost, and the event must not be handled (and the mail sent) again.
_MAX_RECORD_BACKOFF_S = 5.0
# How often, at most, a handler looks again at a mail another sender holds.
_MAX_BUSY_POLL_S = 1.0


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


class MailRecord(Protocol):
    """Where one mail's claim lives, and its protocol."""

    async def claim(self, claim_id: str, message_id: str, stale_before: datetime) -> MailClaim: ...

    async def settle(self, state: MailState, claim_id: str, reason: str | None = None) -> bool: ...

    async def release(self, claim_id: str) -> None: ...


class NotificationRecord:
    """A mail recorded in the ``notifications`` collection."""

    def __init__(
        self, store: JobStore, job_id: str, outcome: str, recipient: str, *, run: str = ""
    ) -> None:
        self.store = store
        # ``run``: a redriven job's later runs have mails of their own ("" for the first).
        self.key = notification_key(job_id + run, outcome, recipient)
        self.job_id = job_id
        self.recipient = recipient
        self.outcome = outcome

    async def claim(self, claim_id: str, message_id: str, stale_before: datetime) -> MailClaim:
        return await self.store.claim_notification(
            self.key,
            job_id=self.job_id,
            recipient=self.recipient,
            kind=self.outcome,
            claim_id=claim_id,
            message_id=message_id,
            stale_before=stale_before,
        )

    async def settle(self, state: MailState, claim_id: str, reason: str | None = None) -> bool:
        return await self.store.settle_notification(
            self.key, state, claim_id=claim_id, reason=reason
        )

    async def release(self, claim_id: str) -> None:
        await self.store.release_notification(self.key, claim_id=claim_id)


class UserMailRecord:
    """The user's mail about an outcome, recorded on the job; in ``notifications`` for an
    event whose job was never stored."""

    def __init__(
        self,
        store: JobStore,
        job_id: str,
        outcome: str,
        recipient: str,
        *,
        run: RunState | None = None,
    ) -> None:
        self.store = store
        self.job_id = job_id
        self.outcome = outcome
        self.run = run  # the job's run the outcome is of: a redrive since voids the claim
        self.fallback: NotificationRecord | None = None
        self._fallback_of = NotificationRecord(store, job_id, outcome, recipient)

    async def claim(self, claim_id: str, message_id: str, stale_before: datetime) -> MailClaim:
        claimed = await self.store.claim_user_mail(
            self.job_id,
            self.outcome,
            claim_id=claim_id,
            message_id=message_id,
            stale_before=stale_before,
            run=self.run,
        )
        if claimed is MailClaim.NO_RECORD:
            self.fallback = self._fallback_of
            return await self.fallback.claim(claim_id, message_id, stale_before)
        return claimed

    async def settle(self, state: MailState, claim_id: str, reason: str | None = None) -> bool:
        if self.fallback is not None:
            return await self.fallback.settle(state, claim_id, reason)
        return await self.store.settle_user_mail(
            self.job_id, self.outcome, state, claim_id=claim_id, reason=reason
        )

    async def release(self, claim_id: str) -> None:
        if self.fallback is not None:
            await self.fallback.release(claim_id)
        else:
            await self.store.release_user_mail(self.job_id, self.outcome, claim_id=claim_id)


class Notifier:
    def __init__(
        self,
        store: JobStore,
        mailer: Mailer,
        settings: Settings,
        webhooks: WebhookSender | None = None,
    ) -> None:
        self.store = store
        self.mailer = mailer
        self.settings = settings
        self.webhooks = webhooks

    def results_url(self, job_id: str) -> str | None:
        """The signed link to the job's results page, or the plain status link, or None."""
        secret = self.settings.results_link_secret
        if self.settings.results_page_url and secret is not None:
            expires = int(time.time()) + self.settings.results_link_ttl_seconds
            return results_link(
                self.settings.results_page_url, secret.get_secret_value(), job_id, expires
            )
        return status_link(self.settings.status_page_url, job_id)

    async def _webhook(self, event: JobCompleted | JobDead, outcome: str) -> None:
        """Tell the app (after the user's mail is settled: see jobplane_notifier.webhooks)."""
        if self.webhooks is not None:
            await self.webhooks.deliver(event, outcome, self._claim)

    async def handle(self, event: Event, record: Record) -> None:
        await self.notify(event)

    async def notify(self, event: Event) -> None:
        if isinstance(event, JobCompleted):
            await self.job_completed(event)
        elif isinstance(event, JobDead):
            await self.job_dead(event)
        else:
            raise PermanentError(f"the notifier does not handle {type(event).__name__}")

    async def job_completed(self, event: JobCompleted) -> None:
        # The app's webhook only once the user's mail is settled (sent, skipped or refused
        # for good): a mail still to send claims later, and its claim would clear the retry
        # time a failed webhook leaves (``announce_due_at``).
        try:
            await self._mail_success(event)
        except MailRefusedError:
            await self._webhook(event, SUCCEEDED)
            raise
        await self._webhook(event, SUCCEEDED)

    async def _mail_success(self, event: JobCompleted) -> None:
        user = await self.store.cached_user(event.app_id, event.user_id)
        if user is None:
            log.warning(
                "user is not registered: no success mail",
                extra=fields(app_id=event.app_id, user_id=event.user_id),
            )
            await self.store.settle_user_mail(
                event.job_id, SUCCEEDED, MailState.SKIPPED, reason="user not registered"
            )
            return
        context = {**success_context(event), "status_url": self.results_url(event.job_id)}
        await self._deliver(
            UserMailRecord(self.store, event.job_id, SUCCEEDED, user.email),
            event.job_id,
            SUCCEEDED,
            user.email,
            MailKind.USER_SUCCESS,
            user.language,
            context,
            event.trace_id,
        )

    async def job_dead(self, event: JobDead) -> None:
        dead_letter = is_dead_letter(event)
        # A dead letter is keyed by its own event id: it may carry no job id, and the alert
        # about its job's real end (if it dies later) is another notification.
        subject_id = f"event-{event.event_id}" if dead_letter or not event.job_id else event.job_id
        run = ""
        state: RunState | None = None
        if not dead_letter and event.job_id:
            state = await self.store.run_of(event.job_id)
            if state is not None and not state.covers(event.attempt):
                # The death of a run before a redrive, replayed: its mails went out then.
                log.info(
                    "job.dead of an earlier run: nothing to mail",
                    extra=fields(attempt=event.attempt, run_start_attempt=state.run_start_attempt),
                )
                return
            if state is not None and state.redrives:
                # Each run that dies alerts the administrators once: keys of its own.
                run = f".run{state.redrives + 1}"
        refused: list[str] = []

        user_notified = False
        user_problem = ""
        if dead_letter:
            user_problem = "the event could not be handled (the job's outcome is not known)"
        else:
            user = await self.store.cached_user(event.app_id, event.user_id)
            if user is None:
                user_problem = f"user {event.user_id!r} of app {event.app_id!r} is not registered"
                log.warning(
                    "user is not registered: no failure mail",
                    extra=fields(app_id=event.app_id, user_id=event.user_id),
                )
                await self.store.settle_user_mail(
                    event.job_id, DEAD, MailState.SKIPPED, reason=user_problem
                )
            else:
                context = {
                    **failure_context(event),
                    "status_url": self.results_url(event.job_id),
                }
                try:
                    await self._deliver(
                        UserMailRecord(self.store, event.job_id, DEAD, user.email, run=state),
                        subject_id + run,
                        DEAD,
                        user.email,
                        MailKind.USER_FAILURE,
                        user.language,
                        context,
                        event.trace_id,
                    )
                    user_notified = True
                except MailRefusedError as exc:
                    user_problem = f"the mail to the user was refused: {exc}"
                    refused.append(str(exc))

        if not dead_letter:
            await self._webhook(event, DEAD)

        admins = list(self.settings.admin_emails)
        if event.app_id:
            app = await self.store.cached_app(event.app_id)
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
        alerted = 0
        for admin in recipients:
            try:
                await self._deliver(
                    NotificationRecord(self.store, subject_id, ALERT, admin, run=run),
                    subject_id + run,
                    ALERT,
                    admin,
                    MailKind.ADMIN_ALERT,
                    "en",
                    alert,
                    event.trace_id,
                )
                alerted += 1
            except MailRefusedError as exc:
                refused.append(str(exc))

        if alerted and not dead_letter:
            await self.store.mark_admins_notified(event.job_id)
        if refused:
            # The event loop never dead-letters a job.dead event (that could loop): this
            # ends in its log, after every other mail of the event went out.
            raise PermanentError("; ".join(refused))

    async def _deliver(
        self,
        record: MailRecord,
        subject_id: str,
        outcome: str,
        recipient: str,
        kind: MailKind,
        language: str,
        context: dict[str, Any],
        trace_id: str,
    ) -> None:
        """Claim, send, record: at most one mail per record (see the module docstring)."""
        mail_id = message_id(subject_id, outcome, recipient, self.mailer.domain)
        claim_id = uuid.uuid4().hex
        if not await self._claim(
            lambda stale_before: record.claim(claim_id, mail_id, stale_before)
        ):
            metrics.EMAILS_DEDUPLICATED.labels(kind.value).inc()
            log.info("already notified", extra=fields(outcome=outcome, to=recipient))
            return
        subject, text, html = render(kind, language, context)
        mail = Mail(
            to=recipient,
            subject=subject,
            text=text,
            html=html,
            message_id=mail_id,
            headers={
                "X-Jobplane-Job-Id": subject_id,
                "X-Jobplane-Outcome": outcome,
                "X-Jobplane-Trace-Id": trace_id,
            },
        )
        try:
            with tracing.span(
                "smtp send",
                trace_id,
                kind=SpanKind.CLIENT,
                attributes={"jobplane.mail_kind": kind.value, "jobplane.outcome": outcome},
            ):
                await self.mailer.send(mail)
        except MailRefusedError as exc:
            metrics.EMAILS_FAILED.labels(kind.value, "refused").inc()
            log.error("mail refused for good", extra=fields(to=recipient, reason=str(exc)))
            await record.settle(MailState.FAILED, claim_id, reason=str(exc))
            raise
        except SendFailedError as exc:
            metrics.EMAILS_FAILED.labels(kind.value, "transient").inc()
            if not exc.maybe_delivered:
                # Nothing reached the server: the next try may claim it at once.
                await record.release(claim_id)
            raise
        metrics.EMAILS_SENT.labels(kind.value).inc()
        await _until_recorded(record, claim_id, recipient)

    async def _claim(self, claim: Callable[[datetime], Awaitable[MailClaim]]) -> bool:
        """True once the mail (or webhook) is ours to send; False when it needs no sending
        (any more). While another sender holds a fresh claim (a duplicate event in flight),
        wait: it settles soon, or its claim goes stale after the claim timeout and is ours.
        ``claim`` tries once, given the time before which a claim is stale."""
        timeout = timedelta(seconds=self.settings.claim_timeout_seconds)
        delay = 0.05
        while True:
            claimed = await claim(utcnow() - timeout)
            if claimed is not MailClaim.BUSY:
                return claimed is MailClaim.CLAIMED
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_BUSY_POLL_S)


async def _until_recorded(record: MailRecord, claim_id: str, recipient: str) -> None:
    delay = 0.2
    while True:
        try:
            if not await record.settle(MailState.SENT, claim_id):
                log.warning("mail sent, but its claim was taken over", extra=fields(to=recipient))
            return
        except Exception:
            log.exception("mail sent, recording it failed; will try again")
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_RECORD_BACKOFF_S)
