"""The gateway's settings, read from environment variables."""

from __future__ import annotations

from jobplane.config import CommonSettings
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict


class Settings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    # The platform administrators' key for the admin routes (app registration). Required.
    admin_api_key: SecretStr = Field(min_length=1)
    # Where app backends reach this gateway (the base of every job's callback URL and of
    # the status URLs the API hands out).
    public_url: str = "http://127.0.0.1:8000"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # How long a request waits for Kafka's ack of its event before answering 503 (the
    # client retries; with an Idempotency-Key the retry returns the same job).
    publish_timeout_seconds: float = Field(default=10.0, gt=0)
