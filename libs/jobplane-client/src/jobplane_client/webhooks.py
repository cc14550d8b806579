"""Signed outcome webhooks: how Jobplane signs them and how a receiver checks them.

Jobplane POSTs a job's outcome to the app's webhook URL with the header

    Jobplane-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>

where the HMAC is computed with the app's webhook secret over ``"<t>.<raw body>"`` (the
scheme of Stripe and GitHub). The timestamp is part of what is signed, so a captured request
cannot be replayed later than the tolerance; the receiver verifies the raw bytes it
received, before parsing them. The platform signs with :func:`sign`, receivers check with
:func:`verify` — one definition of the scheme for both sides.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from typing import Any

SIGNATURE_HEADER = "Jobplane-Signature"
# The same for every retry of one delivery: receivers drop repeats by it.
DELIVERY_ID_HEADER = "Jobplane-Webhook-Id"
ATTEMPT_HEADER = "Jobplane-Webhook-Attempt"
SCHEME = "v1"
# How old a signed timestamp may be (and how far in the future, for clock skew).
DEFAULT_TOLERANCE_SECONDS = 300


class WebhookSignatureError(ValueError):
    """The request is not a genuine, fresh Jobplane webhook."""


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>.<body>"`` under ``secret``."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str | Sequence[str], body: bytes, timestamp: int | None = None) -> str:
    """The ``Jobplane-Signature`` header value for ``body``, signed now (or at ``timestamp``).
    Several secrets (a secret being rotated, and the one it replaces) give one ``v1`` each."""
    moment = int(time.time()) if timestamp is None else timestamp
    secrets = [secret] if isinstance(secret, str) else list(secret)
    signatures = ",".join(f"{SCHEME}={signature(s, moment, body)}" for s in secrets)
    return f"t={moment},{signatures}"


def verify(
    secret: str,
    body: bytes,
    header: str | None,
    *,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Raise :class:`WebhookSignatureError` unless ``header`` signs ``body`` with ``secret``
    within ``tolerance_seconds`` of ``now``. Several ``v1`` values may be present (while a
    secret is being rotated): one matching is enough."""
    if not header:
        raise WebhookSignatureError(f"no {SIGNATURE_HEADER} header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError as exc:
                raise WebhookSignatureError("the signature's timestamp is not a number") from exc
        elif key == SCHEME:
            candidates.append(value)
    if timestamp is None or not candidates:
        raise WebhookSignatureError(f"malformed {SIGNATURE_HEADER} header")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        raise WebhookSignatureError("the signature's timestamp is outside the tolerance")
    expected = signature(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise WebhookSignatureError("the signature does not match")


def parse_event(
    secret: str,
    body: bytes,
    header: str | None,
    *,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> dict[str, Any]:
    """The webhook's JSON body once its signature is verified (see :func:`verify`)."""
    verify(secret, body, header, tolerance_seconds=tolerance_seconds)
    event: dict[str, Any] = json.loads(body)
    return event
