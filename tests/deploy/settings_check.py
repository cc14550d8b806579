"""Checks the Compose file and the Kubernetes manifests share: a service starts with the
environment they give it, and gets the time its clean stop takes."""

from __future__ import annotations

import pytest
from jobplane.config import CommonSettings
from jobplane.service import _CLOSE_S

from docs.gen_config import env_vars


def starts_with(
    settings_class: type[CommonSettings], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service's Settings accept exactly this environment (bounds, JSON lists,
    cross-checks), with nothing of the test's own environment mixed in."""
    for name in env_vars(settings_class):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings_class()


def clean_stop_seconds(env: dict[str, str]) -> float:
    """The bound jobplane.service puts on a stop: drain, the producer's last deliveries,
    then closing."""
    defaults = CommonSettings()
    drain = float(env.get("DRAIN_TIMEOUT_SECONDS", defaults.drain_timeout_seconds))
    delivery = float(
        env.get("KAFKA_DELIVERY_TIMEOUT_SECONDS", defaults.kafka_delivery_timeout_seconds)
    )
    return drain + delivery + _CLOSE_S
