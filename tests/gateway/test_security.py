from __future__ import annotations

import hashlib

from jobplane.security import hash_secret, new_secret, secret_matches
from jobplane_gateway.security import api_key_matches, app_id_of, is_admin_key, new_api_key
from pydantic import SecretStr


def test_api_keys_name_their_app_and_are_random() -> None:
    key = new_api_key("photos")
    app_id, _, secret = key.partition(".")
    assert app_id == "photos"
    assert len(secret) >= 40
    assert new_api_key("photos") != key


def test_app_id_of_a_key() -> None:
    assert app_id_of("photos.abc") == "photos"
    assert app_id_of("photos.abc.def") == "photos"
    for malformed in ("photos", "photos.", ".abc", ""):
        assert app_id_of(malformed) is None


def test_keys_and_tokens_are_kept_as_sha256_hex() -> None:
    assert hash_secret("tok") == hashlib.sha256(b"tok").hexdigest()
    key = new_api_key("a")
    assert api_key_matches(key, hash_secret(key))
    assert not api_key_matches(key + "x", hash_secret(key))
    assert secret_matches("tok", hash_secret("tok"))
    assert not secret_matches("tok", None)
    assert not secret_matches("tok", "")
    assert new_secret() != new_secret()


def test_admin_key() -> None:
    admin = SecretStr("the-admin-key")
    assert is_admin_key("the-admin-key", admin)
    assert not is_admin_key("the-admin-ke", admin)
    assert not is_admin_key("", admin)
