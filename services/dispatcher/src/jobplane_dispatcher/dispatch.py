"""Handling one ``job.requested`` event: claim the attempt, call the backend, report.

The flow (see the pipeline contract):

1. the app must be registered, else the job is rejected (``job.failed``, kind ``rejected``);
2. the job document is created if an app produced ``job.requested`` directly;
3. the attempt is claimed (queued / retry_scheduled → dispatched) with a fresh callback token
   and the attempt's deadline — a duplicate or stale event claims nothing and is skipped, so
   a backend is called at most once per attempt;
4. the backend is called (within the app's concurrency limit): accepted → running; a result at
   once → succeeded and ``job.completed``; a failure → ``job.failed``. The dispatcher never
   moves a job to retry_scheduled or dead itself: the retry service decides.
"""

from __future__ import annotations

import json
import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

from jobplane.events import Event, Failure, FailureKind, JobFailed, JobRequested
from jobplane.jobs import JobStatus
from jobplane.kafka import PermanentError, Publisher, Record
from jobplane.logs import bind, fields
from jobplane.security import hash_secret
from jobplane.store import App, JobStore, NewJob, utcnow
from jobplane.topics import Topics

from jobplane_dispatcher.backend import Accepted, BackendClient, CompletedAtOnce, Failed
from jobplane_dispatcher.config import Settings
from jobplane_dispatcher.limits import AppLimits

log = logging.getLogger(__name__)


def new_callback_token() -> str:
    return secrets.token_urlsafe(32)


def attempt_timeout_seconds(event: JobRequested, job_timeout: int | None, app: App) -> int:
    """The request's own timeout, else the job's, else the app's default."""
    return event.timeout_seconds or job_timeout or app.default_timeout_seconds


def backend_body(
    event: JobRequested,
    payload: Any,
    *,
    callback_url: str,
    callback_token: str,
    deadline: datetime,
) -> dict[str, Any]:
    """The JSON body of the dispatch POST, as the contract defines it."""
    return {
        "job_id": event.job_id,
        "app_id": event.app_id,
        "user_id": event.user_id,
        "attempt": event.attempt,
        "job_type": event.job_type,
        "payload": payload,
        "callback_url": callback_url,
        "callback_token": callback_token,
        "deadline": deadline.isoformat().replace("+00:00", "Z"),
    }


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        publisher: Publisher,
        topics: Topics,
        backend: BackendClient,
        limits: AppLimits | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.publisher = publisher
        self.topics = topics
        self.backend = backend
        self.limits = limits or AppLimits()

    async def handle(self, event: Event, record: Record) -> None:
        """The EventLoop's handler; it has bound the trace id and job id already."""
        if not isinstance(event, JobRequested):
            raise PermanentError(f"expected JobRequested, got {type(event).__name__}")
        with bind(attempt=str(event.attempt)):
            await self.dispatch(event)

    async def dispatch(self, event: JobRequested) -> None:
        app = await self.store.get_app(event.app_id)
        if app is None:
            await self._fail(event, FailureKind.REJECTED, f"app {event.app_id!r} is not registered")
            return

        job, created = await self.store.create_job(
            NewJob(
                job_id=event.job_id,
                app_id=event.app_id,
                user_id=event.user_id,
                job_type=event.job_type,
                payload=event.payload,
                timeout_seconds=event.timeout_seconds,
                trace_id=event.trace_id,
            )
        )
        if created:
            log.info("job created from a direct job.requested")
        if job.app_id != event.app_id:
            # Never touch, or report on, another app's job because of a colliding job id.
            log.error(
                "job id belongs to another app; event ignored",
                extra=fields(event_app_id=event.app_id, job_app_id=job.app_id),
            )
            return

        try:
            payload = json.loads(event.payload)
        except ValueError as exc:
            await self._fail(event, FailureKind.REJECTED, f"payload is not valid JSON: {exc}")
            return

        async with self.limits.slot(app):
            token = new_callback_token()
            timeout = attempt_timeout_seconds(event, job.timeout_seconds, app)
            deadline = utcnow() + timedelta(seconds=timeout)
            claimed = await self.store.claim_attempt(
                event.job_id,
                event.attempt,
                callback_token_hash=hash_secret(token),
                deadline_at=deadline,
            )
            if claimed is None:
                await self._skip(event)
                return
            body = backend_body(
                event,
                payload,
                callback_url=self.settings.callback_url(event.job_id),
                callback_token=token,
                deadline=deadline,
            )
            outcome = await self.backend.dispatch(app.backend_url, body, event.trace_id)

        if isinstance(outcome, Accepted):
            if await self.store.mark_running(event.job_id, event.attempt) is None:
                # The callback (or a timeout report) overtook us: it already decided.
                log.info("accepted, but the attempt has moved on already")
            else:
                log.info("attempt running", extra=fields(deadline=deadline.isoformat()))
        elif isinstance(outcome, CompletedAtOnce):
            await self._complete(event, outcome.result)
        else:
            assert isinstance(outcome, Failed)
            await self._publish_failure(event, outcome.failure)

    async def _skip(self, event: JobRequested) -> None:
        """A duplicate or stale event: nothing to dispatch."""
        current = await self.store.get_job(event.job_id)
        log.info(
            "attempt not due (duplicate or stale event); skipped",
            extra=fields(
                status=current.status.value if current else None,
                job_attempt=current.attempt if current else None,
            ),
        )
        if (
            current is not None
            and current.status is JobStatus.SUCCEEDED
            and current.attempt == event.attempt
        ):
            # We may have stopped between storing a result-at-once and announcing it; a second
            # announcement is harmless (the notifier sends each e-mail once).
            await self.publisher.publish(self.topics.completed, current.completed_event())

    async def _complete(self, event: JobRequested, result: str) -> None:
        job = await self.store.complete(event.job_id, event.attempt, result)
        if job is None:
            log.info("completed at once, but the attempt has moved on already")
            return
        await self.publisher.publish(self.topics.completed, job.completed_event())

    async def _fail(self, event: JobRequested, kind: FailureKind, message: str) -> None:
        await self._publish_failure(event, Failure(kind=kind, message=message, retryable=False))

    async def _publish_failure(self, event: JobRequested, failure: Failure) -> None:
        log.warning(
            "attempt failed",
            extra=fields(
                kind=failure.kind.value, retryable=failure.retryable, reason=failure.message
            ),
        )
        await self.publisher.publish(self.topics.failed, failed_event(event, failure))


def failed_event(event: JobRequested, failure: Failure) -> JobFailed:
    return JobFailed(
        job_id=event.job_id,
        app_id=event.app_id,
        user_id=event.user_id,
        attempt=event.attempt,
        trace_id=event.trace_id,
        job_type=event.job_type,
        payload=event.payload,
        timeout_seconds=event.timeout_seconds,
        failure=failure,
    )
