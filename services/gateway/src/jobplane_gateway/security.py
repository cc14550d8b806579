"""App API keys: ``<app_id>.<secret>``, stored as a SHA-256 digest only."""

from __future__ import annotations

import hmac

from jobplane.security import hash_secret, new_secret, secret_matches
from pydantic import SecretStr


def new_api_key(app_id: str) -> str:
    """A fresh API key for ``app_id``; the app id prefix tells which app presents it."""
    return f"{app_id}.{new_secret()}"


def new_webhook_secret() -> str:
    """A fresh secret to sign an app's webhooks with (kept as it is: it signs)."""
    return f"whsec_{new_secret()}"


def app_id_of(api_key: str) -> str | None:
    """The app id an API key claims to belong to (app ids hold no dot)."""
    app_id, dot, secret = api_key.partition(".")
    return app_id if dot and app_id and secret else None


def api_key_matches(api_key: str, api_key_hash: str) -> bool:
    return secret_matches(api_key, api_key_hash)


def is_admin_key(presented: str, admin_key: SecretStr) -> bool:
    # Compare digests: equal lengths, constant time, whatever was presented.
    return hmac.compare_digest(hash_secret(presented), hash_secret(admin_key.get_secret_value()))


__all__ = [
    "api_key_matches",
    "app_id_of",
    "hash_secret",
    "is_admin_key",
    "new_api_key",
    "new_webhook_secret",
]
