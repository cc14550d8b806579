"""Apps' outcome webhooks: ``job.completed`` / ``job.dead`` → a signed POST to the app.

An app that registered a webhook URL is told each outcome of its jobs (succeeded, dead) by
one POST, signed with the app's secret (``jobplane_client.webhooks``: a timestamp and an
HMAC-SHA256 over ``"<timestamp>.<body>"``, as Stripe and GitHub do).

Delivered once per job and outcome, with the e-mails' protocol (``webhook.<outcome>`` on
the job; see ``jobplane.store``): claim, POST, settle. A POST that fails (no answer, a
timeout, anything but 2xx) is not retried in place, which would hold the partition's other
events back: the delivery is recorded ``retrying`` with its error and next time, and the job
owes its outcome event again at that time, so the outbox relay re-publishes it and the
notifier claims the delivery anew. After ``webhook_max_attempts`` it is ``failed``.

An endpoint that does not answer (a timeout, no connection) would hold a handler for the
whole timeout per delivery, and a burst of one app's outcomes would take every handler of
the notifier: after such a failure, the app's next deliveries are put off for a while
without being tried (``retrying``, "not tried", the attempt not counted). Every
try carries the same ``Jobplane-Webhook-Id``, by which a receiver drops a repeat (a notifier
that died after the POST and before recording it POSTs again once its claim goes stale).
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
from jobplane import metrics
from jobplane.events import JobCompleted, JobDead
from jobplane.logs import fields
from jobplane.store import App, JobStore, MailClaim, utcnow
from jobplane_client.webhooks import ATTEMPT_HEADER, DELIVERY_ID_HEADER, SIGNATURE_HEADER, sign

from jobplane_notifier.config import Settings

log = logging.getLogger(__name__)

USER_AGENT = "Jobplane-Webhook/1"
# Of an endpoint's answer, this much goes into the recorded error.
_ERROR_BODY_CHARS = 200

ClaimLoop = Callable[[Callable[[datetime], Awaitable[MailClaim]]], Awaitable[bool]]


def delivery_id(job_id: str, outcome: str) -> str:
    return f"{job_id}:{outcome}"


def outcome_body(event: JobCompleted | JobDead, outcome: str) -> bytes:
    """The JSON the app receives about ``event``'s outcome."""
    job: dict[str, Any] = {
        "job_id": event.job_id,
        "app_id": event.app_id,
        "user_id": event.user_id,
        "job_type": event.job_type,
        "status": outcome,
        "attempt": event.attempt,
        "trace_id": event.trace_id,
    }
    if isinstance(event, JobCompleted):
        job["result"] = json.loads(event.result)
    else:
        job["error"] = {
            "kind": event.failure.kind.value if event.failure else None,
            "message": event.reason,
        }
    body = {
        "id": delivery_id(event.job_id, outcome),
        "type": f"job.{outcome}",
        "occurred_at": event.occurred_at.isoformat(),
        "job": job,
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def retry_delay(settings: Settings, attempts: int) -> timedelta:
    """How long after its ``attempts``-th failed try a delivery is tried again: doubling,
    bounded, with ±10 % jitter so that an endpoint back up is not hit by all at once."""
    base = settings.webhook_retry_base_seconds * 2 ** min(attempts - 1, 32)
    seconds = min(base, settings.webhook_retry_max_seconds) * random.uniform(0.9, 1.1)
    return timedelta(seconds=seconds)


def count_delivery(outcome: str, result: str) -> None:
    """One webhook delivery ended: ``result`` is "sent", "retrying", "failed" or "deferred"
    (put off untried)."""
    metrics.WEBHOOK_DELIVERIES.labels(outcome, result).inc()


class WebhookSender:
    def __init__(self, store: JobStore, settings: Settings, client: httpx.AsyncClient) -> None:
        self.store = store
        self.settings = settings
        self.client = client
        # Per app whose endpoint did not answer: until when (monotonic) its deliveries are
        # put off untried. In memory: each notifier learns it from one failure of its own.
        self._unreachable_until: dict[str, float] = {}

    @property
    def unreachable_pause_seconds(self) -> float:
        return max(self.settings.webhook_retry_base_seconds, self.settings.webhook_timeout_seconds)

    async def _put_off(self, event: JobCompleted | JobDead, outcome: str, app_id: str) -> bool:
        """True when the app's endpoint was found unreachable lately: the delivery is put off
        (or someone else is at it) without a POST."""
        left = self._unreachable_until.get(app_id, 0.0) - time.monotonic()
        if left <= 0:
            return False
        now = utcnow()
        if await self.store.defer_webhook(
            event.job_id,
            outcome,
            until=now + timedelta(seconds=left),
            reason="not tried: the endpoint did not answer a moment ago",
            stale_before=now - timedelta(seconds=self.settings.claim_timeout_seconds),
        ):
            count_delivery(outcome, "deferred")
            log.info("webhook put off: the endpoint is unreachable", extra=fields(outcome=outcome))
        return True

    async def deliver(
        self, event: JobCompleted | JobDead, outcome: str, claim_loop: ClaimLoop
    ) -> None:
        """POST ``outcome`` to the app's webhook, once (see the module docstring).
        ``claim_loop`` waits out a claim another notifier holds, as for the e-mails."""
        app = await self.store.cached_app(event.app_id)
        if app is None or not app.webhook_url or not app.webhook_secret:
            return
        if await self._put_off(event, outcome, app.app_id):
            return
        claim_id = uuid.uuid4().hex
        attempts = 0

        async def claim(stale_before: datetime) -> MailClaim:
            nonlocal attempts
            claimed, attempts = await self.store.claim_webhook(
                event.job_id, outcome, claim_id=claim_id, stale_before=stale_before
            )
            return claimed

        if not await claim_loop(claim):
            return
        error, unreachable = await self._post(app, event, outcome, attempts)
        if unreachable:
            self._unreachable_until[app.app_id] = time.monotonic() + self.unreachable_pause_seconds
        else:
            self._unreachable_until.pop(app.app_id, None)
        retry_at: datetime | None = None
        if error is None:
            result = "sent"
            log.info("webhook delivered", extra=fields(outcome=outcome, attempts=attempts))
        elif attempts < self.settings.webhook_max_attempts:
            result = "retrying"
            retry_at = utcnow() + retry_delay(self.settings, attempts)
            log.warning(
                "webhook failed; tried again later",
                extra=fields(outcome=outcome, attempts=attempts, error=error, retry_at=retry_at),
            )
        else:
            result = "failed"
            log.error(
                "webhook failed for good",
                extra=fields(outcome=outcome, attempts=attempts, error=error),
            )
        count_delivery(outcome, result)
        if not await self.store.settle_webhook(
            event.job_id, outcome, claim_id=claim_id, error=error, retry_at=retry_at
        ):
            log.warning("webhook tried, but its claim was taken over meanwhile")

    async def _post(
        self, app: App, event: JobCompleted | JobDead, outcome: str, attempts: int
    ) -> tuple[str | None, bool]:
        """POST the signed outcome: the error that makes it a failure (None: delivered), and
        whether the endpoint gave no answer at all."""
        assert app.webhook_url is not None
        body = outcome_body(event, outcome)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: sign(app.signing_secrets(utcnow()), body),
            DELIVERY_ID_HEADER: delivery_id(event.job_id, outcome),
            ATTEMPT_HEADER: str(attempts),
        }
        try:
            response = await self.client.post(
                app.webhook_url,
                content=body,
                headers=headers,
                timeout=self.settings.webhook_timeout_seconds,
            )
        except httpx.TimeoutException:
            return f"no answer within {self.settings.webhook_timeout_seconds:g} s", True
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"[: _ERROR_BODY_CHARS * 2], True
        if response.is_success:
            return None, False
        return f"HTTP {response.status_code}: {response.text[:_ERROR_BODY_CHARS]}", False
