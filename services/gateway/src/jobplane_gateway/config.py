"""The gateway's settings, read from environment variables."""

from __future__ import annotations

from datetime import timedelta

from jobplane.config import KIB, MAX_SIZE_LIMIT_BYTES, CommonSettings
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
    # How long a request waits for Kafka's ack of its event. The job (or the result) is
    # stored before, owing its event: without the ack in time the answer is the same, and
    # the outbox relay announces the event later.
    publish_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # The largest job payload, in bytes of its JSON text (UTF-8); bigger ones are refused
    # with 413 before anything is stored (the result's bound is common: MAX_RESULT_BYTES).
    max_payload_bytes: int = Field(default=512 * KIB, ge=1 * KIB, le=MAX_SIZE_LIMIT_BYTES)
    # Outbox relay: every ``relay_interval_seconds`` it re-publishes up to ``relay_batch``
    # events owed for ``announce_grace_seconds`` (a write owes its event; the consumer that
    # acts on it clears the debt); a relayed event is owed again after a backoff that doubles
    # from the grace up to ``relay_max_backoff_seconds``. Several gateways may relay at once:
    # each owed event is taken by one of them, and a duplicate event would be harmless.
    relay_interval_seconds: float = Field(default=5.0, gt=0)
    announce_grace_seconds: float = Field(default=30.0, gt=0)
    relay_batch: int = Field(default=100, ge=1, le=10_000)
    relay_max_backoff_seconds: float = Field(default=600.0, gt=0)
    # The longest one redrive request may take at its rate (``matched / rate_per_second``):
    # a slower one is refused (422) before anything is redriven, rather than holding an
    # HTTP request open for hours.
    redrive_max_seconds: float = Field(default=300.0, gt=0, le=3600)
    # Signs the links to jobs' results pages (``/results/<job_id>``) that the notifier puts
    # in its mails: the notifier's RESULTS_LINK_SECRET. Unset: no results pages (404).
    results_link_secret: SecretStr | None = None
    # On SIGTERM: how long the requests in flight may take to finish before they are cut.
    shutdown_timeout_seconds: int = Field(default=10, ge=0, le=300)

    @property
    def announce_grace(self) -> timedelta:
        return timedelta(seconds=self.announce_grace_seconds)

    # What a 503 tells the client to wait before it retries (the Retry-After header).
    retry_after_seconds: int = Field(default=5, ge=1, le=3600)
    # How long a dashboard login (a session cookie given for the admin key) stays valid.
    dashboard_session_seconds: int = Field(default=12 * 3600, ge=60, le=30 * 24 * 3600)
