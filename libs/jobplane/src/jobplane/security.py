"""Secrets the platform hands out (app API keys, callback tokens) and how it keeps them.

Only a SHA-256 digest of a secret is ever stored; a presented secret is checked by hashing it
and comparing the digests in constant time. Every service must hash the same way — the
dispatcher stores a callback token's hash that the gateway later checks — so both use these.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_secret(nbytes: int = 32) -> str:
    """A URL-safe random secret with ``nbytes`` bytes of entropy."""
    return secrets.token_urlsafe(nbytes)


def hash_secret(secret: str) -> str:
    """The SHA-256 hex digest of a secret: what the store keeps instead of the secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, expected_hash: str | None) -> bool:
    """Whether ``secret`` hashes to ``expected_hash``, compared in constant time."""
    if not expected_hash:
        return False
    return hmac.compare_digest(hash_secret(secret), expected_hash)
