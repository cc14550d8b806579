"""Webhook signatures: what the platform signs, a receiver verifies; nothing else passes."""

from __future__ import annotations

import time

import pytest
from jobplane_client.webhooks import WebhookSignatureError, parse_event, sign, verify

SECRET = "whsec_test"
BODY = b'{"id":"j1:succeeded","type":"job.succeeded"}'


def test_a_signed_body_verifies() -> None:
    verify(SECRET, BODY, sign(SECRET, BODY))
    assert parse_event(SECRET, BODY, sign(SECRET, BODY))["type"] == "job.succeeded"


def test_the_header_names_time_and_hmac() -> None:
    header = sign(SECRET, BODY, timestamp=1_700_000_000)
    # HMAC-SHA256("whsec_test", "1700000000." + BODY), as any HMAC library computes it.
    import hashlib
    import hmac

    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "v1=abc",
        "t=notanumber,v1=abc",
        "t=1700000000",
    ],
)
def test_malformed_headers_are_refused(header: str | None) -> None:
    with pytest.raises(WebhookSignatureError):
        verify(SECRET, BODY, header, now=1_700_000_000)


def test_another_body_secret_or_time_is_refused() -> None:
    header = sign(SECRET, BODY)
    with pytest.raises(WebhookSignatureError, match="does not match"):
        verify(SECRET, BODY + b" ", header)
    with pytest.raises(WebhookSignatureError, match="does not match"):
        verify("whsec_other", BODY, header)
    old = sign(SECRET, BODY, timestamp=int(time.time()) - 301)
    with pytest.raises(WebhookSignatureError, match="tolerance"):
        verify(SECRET, BODY, old)
    verify(SECRET, BODY, old, tolerance_seconds=600)


def test_one_matching_signature_of_several_is_enough() -> None:
    now = int(time.time())
    good = sign(SECRET, BODY, timestamp=now)
    rotating = f"{good},v1={'0' * 64}"
    verify(SECRET, BODY, rotating)
