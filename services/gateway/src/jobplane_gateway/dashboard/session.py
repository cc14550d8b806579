"""The dashboard's session: a cookie that proves its holder once presented the admin key.

The cookie is ``<issued unix time>.<HMAC-SHA256 of it, keyed by the admin key>``: nothing is
stored server-side, every gateway of a deployment accepts it, and changing the admin key
ends every session. It is HttpOnly and SameSite=Strict (another site cannot make the
browser send it with a form post, which is what guards the redrive and cancel buttons).
"""

from __future__ import annotations

import hashlib
import hmac
import time

from pydantic import SecretStr

COOKIE_NAME = "jobplane_dashboard"


def _signature(issued_at: int, admin_key: SecretStr) -> str:
    message = f"jobplane-dashboard-session:{issued_at}".encode()
    return hmac.new(admin_key.get_secret_value().encode(), message, hashlib.sha256).hexdigest()


def new_session(admin_key: SecretStr, now: float | None = None) -> str:
    issued_at = int(time.time() if now is None else now)
    return f"{issued_at}.{_signature(issued_at, admin_key)}"


def session_valid(
    cookie: str | None, admin_key: SecretStr, max_age_seconds: int, now: float | None = None
) -> bool:
    """Signed with this admin key, and issued at most ``max_age_seconds`` ago (not later
    than now)."""
    if not cookie:
        return False
    issued, _, signature = cookie.partition(".")
    if not issued.isdigit() or len(issued) > 12:
        return False
    age = (time.time() if now is None else now) - int(issued)
    if not 0 <= age <= max_age_seconds:
        return False
    return hmac.compare_digest(signature, _signature(int(issued), admin_key))
