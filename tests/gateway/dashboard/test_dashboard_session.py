"""The dashboard's session cookie: signed with the admin key, and it expires."""

from __future__ import annotations

from jobplane_gateway.dashboard.session import new_session, session_valid
from pydantic import SecretStr

KEY = SecretStr("the-admin-key")


def test_a_session_is_valid_until_it_expires() -> None:
    cookie = new_session(KEY, now=1_000_000)
    assert session_valid(cookie, KEY, 3600, now=1_000_000 + 3600)
    assert not session_valid(cookie, KEY, 3600, now=1_000_000 + 3601)
    assert not session_valid(cookie, KEY, 3600, now=1_000_000 - 1)  # issued in the future


def test_a_forged_or_other_keys_session_is_refused() -> None:
    cookie = new_session(KEY, now=1_000_000)
    issued, _, signature = cookie.partition(".")
    assert not session_valid(cookie, SecretStr("a-new-admin-key"), 3600, now=1_000_000)
    assert not session_valid(f"{int(issued) + 1}.{signature}", KEY, 3600, now=1_000_000)
    for junk in (None, "", "abc", "1000000", ".", f"-5.{signature}", "9" * 40 + ".x"):
        assert not session_valid(junk, KEY, 3600, now=1_000_000)
