"""The dispatcher's settings."""

from __future__ import annotations

import pytest
from jobplane_dispatcher.config import Settings


def test_defaults() -> None:
    settings = Settings()
    assert settings.group_id == "jobplane-dispatcher"
    assert settings.gateway_public_url == "http://127.0.0.1:8000"
    assert settings.concurrency == 64
    assert settings.connect_timeout_seconds == 5
    assert settings.request_timeout_seconds == 30
    assert settings.deadline_check_interval_seconds == 5.0


def test_callback_url() -> None:
    settings = Settings(gateway_public_url="https://jobs.example.test/")
    assert settings.callback_url("j1") == "https://jobs.example.test/v1/jobs/j1/result"


def test_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_PUBLIC_URL", "http://gw:8000")
    monkeypatch.setenv("CONCURRENCY", "8")
    monkeypatch.setenv("GROUP_ID", "g")
    settings = Settings()
    assert settings.callback_url("x") == "http://gw:8000/v1/jobs/x/result"
    assert settings.concurrency == 8
    assert settings.group_id == "g"
