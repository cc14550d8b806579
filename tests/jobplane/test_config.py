"""List settings from the environment: JSON, or comma-separated as typed on a command line."""

from __future__ import annotations

import pytest
from jobplane_notifier.config import Settings as NotifierSettings
from jobplane_retry.config import Settings as RetrySettings


@pytest.mark.parametrize(
    ("raw", "delays"),
    [("1,2", [1.0, 2.0]), ("[1, 2.5]", [1.0, 2.5]), (" 0.5 , 3 ", [0.5, 3.0]), ("7", [7.0])],
)
def test_retry_delays_are_read_as_json_or_comma_separated(
    raw: str, delays: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRY_DELAYS_SECONDS", raw)
    assert RetrySettings().retry_delays_seconds == delays


def test_admin_emails_are_read_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_EMAILS", "a@example.com, b@example.com")
    assert NotifierSettings().admin_emails == ["a@example.com", "b@example.com"]
    monkeypatch.setenv("ADMIN_EMAILS", '["c@example.com"]')
    assert NotifierSettings().admin_emails == ["c@example.com"]


def test_a_bad_delay_is_still_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETRY_DELAYS_SECONDS", "1,soon")
    with pytest.raises(ValueError, match="retry_delays_seconds"):
        RetrySettings()
