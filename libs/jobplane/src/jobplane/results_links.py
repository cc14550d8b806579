"""Signed, expiring links to one job's results page.

The notifier puts a link in every outcome e-mail; the gateway serves the page to whoever
holds the link, without a login. The link names the job and its expiry and carries an
HMAC-SHA256 of both under a secret the two services share (``RESULTS_LINK_SECRET``), so it
opens that one job's page until it expires and nothing else: another job id, a later expiry
or a changed signature make it invalid.

    <gateway>/results/<job_id>?expires=<unix seconds>&sig=<base64url HMAC>
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from enum import Enum
from urllib.parse import urlencode

RESULTS_PATH = "/results"


class LinkCheck(Enum):
    VALID = "valid"
    FORGED = "forged"  # not signed by us for this job and expiry: 403
    EXPIRED = "expired"  # genuine, but past its expiry: 410


def link_signature(secret: str, job_id: str, expires: int) -> str:
    # The purpose is part of what is signed: the secret signs nothing else that could be
    # passed off as a results link.
    message = f"jobplane-results:{job_id}:{expires}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def results_link(base_url: str, secret: str, job_id: str, expires: int) -> str:
    """The page's URL under ``base_url`` (the gateway's public URL), valid until ``expires``."""
    query = urlencode({"expires": expires, "sig": link_signature(secret, job_id, expires)})
    return f"{base_url.rstrip('/')}{RESULTS_PATH}/{job_id}?{query}"


def check_link(secret: str, job_id: str, expires: int, sig: str, now: float) -> LinkCheck:
    """Whether a presented link is ours (compared in constant time) and still valid."""
    if not hmac.compare_digest(link_signature(secret, job_id, expires), sig):
        return LinkCheck.FORGED
    if now >= expires:
        return LinkCheck.EXPIRED
    return LinkCheck.VALID
