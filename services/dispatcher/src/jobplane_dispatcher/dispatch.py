"""Handling one ``job.requested`` event: check it, claim the attempt, call the backend, record.

The flow (see the pipeline contract):

1. the request must pass the rules every front door applies (``jobplane.validation``) and its
   app must be registered, else the job is rejected: ``job.failed`` kind ``rejected``, not
   retryable (the retry service makes it ``job.dead``, the notifier alerts the admins);
2. the attempt is claimed (queued / retry_scheduled → dispatched) with a fresh callback
   token and the attempt's deadline: one guarded write, no read before it. Only when it
   matches nothing is the job read (the slow path): a job an app produced straight to Kafka
   is created (its user must be registered), a claim whose dispatcher died before the
   backend accepted is taken over once its lease is over (so a backend may see one attempt
   twice: same job id and attempt), and anything else is a duplicate or stale event: a no-op
   (what the store owes is announced by the relay, never by a replay). A retry is claimed
   ``CLAIM_LEAD`` before it is due and called when due, so that the claim's store write is
   not part of its lateness;
3. the backend is called (within the app's concurrency limit) and its answer recorded by one
   guarded write under our token: accepted → running; a result at once → succeeded, then
   ``job.completed``; a failure → the attempt's report, then ``job.failed``. The dispatcher
   never moves a job to retry_scheduled or dead itself: the retry service decides.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from jobplane import metrics
from jobplane.events import Event, Failure, FailureKind, JobFailed, JobRequested, utc_now
from jobplane.jobs import Job, JobStatus
from jobplane.kafka import PermanentError, Publisher, Record, sleep_until
from jobplane.logs import bind, fields
from jobplane.security import hash_secret
from jobplane.store import App, JobStore, NewJob, utcnow
from jobplane.topics import Topics
from jobplane.validation import (
    MAX_NOT_BEFORE_AHEAD_SECONDS,
    check_app_id,
    check_job_id,
    check_job_type,
    check_not_before,
    check_timeout_seconds,
    check_user_id,
    clamp_timeout_seconds,
    parse_json_text,
)

from jobplane_dispatcher.backend import Accepted, BackendClient, CompletedAtOnce, Failed, Outcome
from jobplane_dispatcher.config import Settings
from jobplane_dispatcher.limits import AppLimits

log = logging.getLogger(__name__)

# How often a replay waiting for another dispatcher's claim looks again.
_CLAIM_POLL_SECONDS = 0.5
_CLAIMABLE = (JobStatus.QUEUED, JobStatus.RETRY_SCHEDULED)


def new_callback_token() -> str:
    return secrets.token_urlsafe(32)


def attempt_timeout_seconds(event: JobRequested, app: App) -> int:
    """The request's own timeout (checked at the door), else the app's default, brought
    into range: an app stored before the bounds existed may hold any number."""
    if event.timeout_seconds is not None:
        return event.timeout_seconds
    return clamp_timeout_seconds(app.default_timeout_seconds)


def request_problem(event: JobRequested) -> str | None:
    """What the gateway would refuse in this request (other than its JSON payload)."""
    return (
        check_job_id(event.job_id)
        or check_app_id(event.app_id)
        or check_user_id(event.user_id)
        or check_job_type(event.job_type)
        or check_timeout_seconds(event.timeout_seconds)
        or not_before_problem(event)
    )


# A retry is claimed this long before it is due, and its backend called when it is due (the
# retry service requests it a second ahead): so the claim, a store write that takes tens of
# milliseconds on busy cores, is not part of how late the call comes.
CLAIM_LEAD = timedelta(milliseconds=250)


def not_before(event: Event) -> datetime | None:
    """When the event loop may hand ``event`` to the dispatcher: ``CLAIM_LEAD`` before a
    retry's due time. None: at once, also for a ``not_before`` too far ahead, which
    ``not_before_problem`` rejects then."""
    if (
        not isinstance(event, JobRequested)
        or event.not_before is None
        or check_not_before(event.not_before, utc_now())
    ):
        return None
    return event.not_before - CLAIM_LEAD


def not_before_problem(event: JobRequested) -> str | None:
    """The event loop waits for every ``not_before`` within the bound (less the claim lead),
    so one still further ahead when the request is handled was beyond the bound when the
    event came, even if it is within it now (a moment later): rejected, never called early."""
    now = utc_now()
    if event.not_before is None or event.not_before - CLAIM_LEAD <= now:
        return None
    return check_not_before(event.not_before, now) or (
        f"not_before was more than {MAX_NOT_BEFORE_AHEAD_SECONDS} s ahead when the request came "
        "(it is for the retry service's early requests, not for scheduling jobs)"
    )


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


@dataclass(frozen=True, slots=True)
class Claim:
    """What one claim of an attempt hands to the backend; the store keeps the token's hash."""

    token: str
    token_hash: str
    # When the backend is called: now, or a retry's due time a moment ahead (`CLAIM_LEAD`).
    dispatched_at: datetime
    deadline: datetime

    @classmethod
    def new(cls, timeout_seconds: int, not_before: datetime | None = None) -> Claim:
        token = new_callback_token()
        now = utcnow()
        dispatched_at = max(now, not_before) if not_before is not None else now
        deadline = dispatched_at + timedelta(seconds=timeout_seconds)
        return cls(token, hash_secret(token), dispatched_at, deadline)


@dataclass(frozen=True, slots=True)
class _Call:
    """What the backend call of one event needs, checked already."""

    event: JobRequested
    app: App
    payload: Any
    timeout_seconds: int


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
        payload, problem = parse_json_text(event.payload)
        problem = request_problem(event) or problem
        if problem is not None:
            await self._reject(event, problem)
            return
        app = await self.store.cached_app(event.app_id)
        if app is None:
            await self._reject(event, f"app {event.app_id!r} is not registered")
            return
        if app.disabled:
            await self._hold(event)
            return
        timeout_seconds = attempt_timeout_seconds(event, app)
        call = _Call(event, app, payload, timeout_seconds)
        done = await self._claim_and_call(call, taking_over_before=None)
        if done is None:
            done = await self._slow_path(call)
        if done is not None:
            await self._record(event, *done)

    async def _claim_and_call(
        self, call: _Call, *, taking_over_before: datetime | None
    ) -> tuple[Claim, Outcome] | None:
        """Within the app's concurrency limit: claim the attempt (or take a dead claim over,
        when ``taking_over_before`` is given), then call the backend: at once, or for a retry
        claimed ahead at its due time (``CLAIM_LEAD``). The claim records that instant as
        the dispatch, so that the lease and the deadline start when the call does. None:
        the claim matched nothing."""
        event = call.event
        async with self.limits.slot(call.app):
            claim = Claim.new(call.timeout_seconds, event.not_before)
            if taking_over_before is None:
                claimed = await self.store.claim_attempt(
                    event.job_id,
                    event.attempt,
                    app_id=event.app_id,
                    callback_token_hash=claim.token_hash,
                    deadline_at=claim.deadline,
                    dispatched_at=claim.dispatched_at,
                )
            else:
                claimed = await self.store.reclaim_attempt(
                    event.job_id,
                    event.attempt,
                    app_id=event.app_id,
                    callback_token_hash=claim.token_hash,
                    deadline_at=claim.deadline,
                    claimed_before=taking_over_before,
                )
                if claimed:
                    log.warning("claimed attempt never reached the backend; dispatching it again")
            if not claimed:
                return None
            body = backend_body(
                event,
                call.payload,
                callback_url=self.settings.callback_url(event.job_id),
                callback_token=claim.token,
                deadline=claim.deadline,
            )
            # Apps with a webhook secret get their dispatches signed (no cost for the others).
            secrets = call.app.signing_secrets(utcnow()) if call.app.webhook_secret else ()
            # A retry claimed ahead (CLAIM_LEAD) is called when due, never before.
            await sleep_until(claim.dispatched_at)
            outcome = await self.backend.dispatch(
                call.app.backend_url, body, event.trace_id, signing_secrets=secrets
            )
            metrics.DISPATCH_LATENCY.observe((utcnow() - event.occurred_at).total_seconds())
            return claim, outcome

    async def _slow_path(self, call: _Call) -> tuple[Claim, Outcome] | None:
        """The claim matched nothing: find out why, outside the app's concurrency limit.
        None when there is nothing to do (a duplicate or stale event, or a rejected job)."""
        event = call.event
        job = await self.store.get_job(event.job_id)
        if job is None:
            job = await self._create_direct_job(event)
        lease = timedelta(seconds=self.settings.claim_lease())
        while job is not None:
            if job.app_id != event.app_id:
                # Never touch, or report on, another app's job because of a colliding id.
                raise PermanentError(
                    f"job id {event.job_id!r} belongs to another app than {event.app_id!r}"
                )
            attempt = job.attempt_info(event.attempt)
            if job.attempt != event.attempt:
                break
            if job.status in _CLAIMABLE:
                done = await self._claim_and_call(call, taking_over_before=None)
            elif (
                job.status is JobStatus.DISPATCHED
                and attempt is not None
                and attempt.dispatched_at is not None
                and attempt.accepted_at is None
                and attempt.report is None
            ):
                now = utcnow()
                if now < attempt.dispatched_at + lease:
                    # Another dispatcher may be calling the backend right now: wait for its
                    # answer rather than call twice and void its token.
                    wait = (attempt.dispatched_at + lease - now).total_seconds()
                    await asyncio.sleep(min(wait, _CLAIM_POLL_SECONDS))
                    done = None
                else:
                    done = await self._claim_and_call(call, taking_over_before=now - lease)
            else:
                break
            if done is not None:
                return done
            job = await self.store.get_job(event.job_id)
        if job is not None:
            log.info(
                "attempt not due (duplicate or stale event); nothing to do",
                extra=fields(status=job.status.value, job_attempt=job.attempt),
            )
        return None

    async def _hold(self, event: JobRequested) -> None:
        """The app is disabled: the attempt is held, not dispatched (one guarded write); the
        job stays queued / retry_scheduled and is requested again when the app is enabled
        (or, at the latest, after ``held_recheck_seconds``)."""
        recheck_at = utcnow() + timedelta(seconds=self.settings.held_recheck_seconds)
        held = await self.store.hold(
            event.job_id, event.attempt, app_id=event.app_id, recheck_at=recheck_at
        )
        if held is not None:
            log.info("app is disabled: job held", extra=fields(recheck_at=recheck_at.isoformat()))
            return
        job = await self.store.get_job(event.job_id)
        if job is None:
            # A job produced straight to Kafka: the same rule as the gateway's 403.
            await self._reject(event, f"app {event.app_id!r} is disabled")
            return
        log.info(
            "attempt not due (duplicate or stale event); nothing to do",
            extra=fields(status=job.status.value, job_attempt=job.attempt),
        )

    async def _create_direct_job(self, event: JobRequested) -> Job | None:
        """A job an app produced straight to Kafka: stored here, once its user is known."""
        if await self.store.cached_user(event.app_id, event.user_id) is None:
            await self._reject(
                event, f"user {event.user_id!r} of app {event.app_id!r} is not registered"
            )
            return None
        job, created = await self.store.create_job(NewJob.of_request(event))
        if created:
            log.info("job created from a direct job.requested")
        return job

    async def _record(self, event: JobRequested, claim: Claim, outcome: Outcome) -> None:
        """One guarded write under our claim's token, then what it owes is published."""
        outcome = within_limits(outcome, self.settings.max_result_bytes)
        if isinstance(outcome, Accepted):
            if await self.store.mark_running(event.job_id, event.attempt, claim.token_hash):
                log.info("attempt running", extra=fields(deadline=claim.deadline.isoformat()))
            else:
                # The callback (or a timeout report) overtook us: it already decided.
                log.info("accepted, but the attempt has moved on already")
        elif isinstance(outcome, CompletedAtOnce):
            job = await self.store.complete(
                event.job_id,
                event.attempt,
                outcome.result,
                callback_token_hash=claim.token_hash,
                announce_grace=self.settings.announce_grace,
            )
            if job is None:
                log.info("completed at once, but the attempt has moved on already")
            else:
                metrics.JOBS_COMPLETED.labels(job.app_id, job.job_type).inc()
                metrics.observe_outcome("succeeded", job.created_at, job.updated_at)
                await self.publisher.publish(self.topics.completed, job.completed_event())
        else:
            assert isinstance(outcome, Failed)
            failure = outcome.failure
            reported = await self.store.report_failure(
                event.job_id,
                event.attempt,
                failure,
                callback_token_hash=claim.token_hash,
                announce_grace=self.settings.announce_grace,
            )
            if reported is None:
                log.info("attempt failed, but its outcome was reported already")
            else:
                metrics.BACKEND_FAILURES.labels(failure.kind.value).inc()
                await self._publish_failure(event, failure)

    async def _reject(self, event: JobRequested, reason: str) -> None:
        """A request the gateway would have refused: not retryable, nothing stored."""
        failure = Failure(kind=FailureKind.REJECTED, message=reason, retryable=False)
        await self._publish_failure(event, failure)

    async def _publish_failure(self, event: JobRequested, failure: Failure) -> None:
        log.warning(
            "attempt failed",
            extra=fields(
                kind=failure.kind.value, retryable=failure.retryable, reason=failure.message
            ),
        )
        await self.publisher.publish(self.topics.failed, failed_event(event, failure))


def within_limits(outcome: Outcome, max_result_bytes: int) -> Outcome:
    """A result too large to announce (job.completed must fit a Kafka message) fails the
    attempt for good, as the gateway's 413 refuses it by callback."""
    if not isinstance(outcome, CompletedAtOnce):
        return outcome
    size = len(outcome.result.encode())
    if size <= max_result_bytes:
        return outcome
    return Failed(
        Failure(
            kind=FailureKind.REJECTED,
            message=(
                f"the backend's result is {size} bytes, over the limit of {max_result_bytes} "
                "bytes (MAX_RESULT_BYTES)"
            ),
            retryable=False,
        )
    )


def failed_event(event: JobRequested, failure: Failure) -> JobFailed:
    return JobFailed(
        **event.envelope.fields(),
        payload=event.payload,
        timeout_seconds=event.timeout_seconds,
        failure=failure,
    )
