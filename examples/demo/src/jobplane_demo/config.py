"""The demo backend's settings, from DEMO_* environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class DemoSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEMO_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = 8001
    output_dir: Path = Path(".local/demo/thumbnails")
    # Fail the first N attempts of every job (a payload's "fail_times" wins over this).
    fail_times: int = Field(default=0, ge=0)
    # Reporting a result to the gateway: how often and how long to keep trying.
    callback_attempts: int = Field(default=5, ge=1)
    callback_timeout_seconds: float = Field(default=10.0, gt=0)
    # Checks of every dispatch (jobplane_client.read_dispatch): the platform's public URL
    # (callbacks must go there) and the app's webhook secret (dispatches must be signed).
    gateway_url: str | None = None
    dispatch_secret: SecretStr | None = None
    log_level: str = "INFO"
