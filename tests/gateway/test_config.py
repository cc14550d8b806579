from __future__ import annotations

import pytest
from jobplane_gateway.config import Settings
from pydantic import ValidationError


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_API_KEY", "from-env")
    monkeypatch.setenv("PUBLIC_URL", "https://jobs.example.com")
    monkeypatch.setenv("PORT", "8080")
    settings = Settings()  # type: ignore[call-arg]
    assert settings.admin_api_key.get_secret_value() == "from-env"
    assert "from-env" not in repr(settings)
    assert settings.public_url == "https://jobs.example.com"
    assert settings.port == 8080
    assert settings.host == "127.0.0.1"


def test_defaults() -> None:
    settings = Settings(admin_api_key="k")  # type: ignore[arg-type]
    assert settings.public_url == "http://127.0.0.1:8000"
    assert settings.port == 8000
    assert settings.publish_timeout_seconds == 5
    # Payload and result fit Kafka's 1 MB message with the event's envelope.
    assert settings.max_payload_bytes == settings.max_result_bytes == 512 * 1024
    assert (settings.relay_interval_seconds, settings.announce_grace_seconds) == (5, 30)


def test_size_limits_stay_below_kafkas_message_size() -> None:
    with pytest.raises(ValidationError, match="max_payload_bytes"):
        Settings(admin_api_key="k", max_payload_bytes=1_048_576)  # type: ignore[arg-type]


def test_the_admin_key_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADMIN_API_KEY", raising=False)
    with pytest.raises(ValidationError, match="admin_api_key"):
        Settings()  # type: ignore[call-arg]
