"""Settings of the notifier service, read from environment variables."""

from __future__ import annotations

from typing import Self

from jobplane.config import CommonSettings, EnvList
from pydantic import Field, SecretStr, model_validator


class Settings(CommonSettings):
    group_id: str = "jobplane-notifier"

    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=1025, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    # A hung SMTP server must not hold an event forever: the whole send (connect and every
    # command) fails after this long and is retried.
    smtp_timeout_seconds: float = Field(default=30.0, gt=0)
    # A claim on a mail older than this is presumed left by a sender that died, and taken
    # over (the mail is sent again, with the same Message-ID). Longer than any send can take.
    claim_timeout_seconds: float = Field(default=120.0, gt=0)
    mail_from: str = "Jobplane <jobplane@localhost>"

    # Platform-wide administrators, alerted of every dead job; env: a JSON list or
    # comma-separated addresses.
    admin_emails: EnvList[str] = Field(default_factory=list)
    # Base URL of a status page for links in mails: "{job_id}" in it is replaced by the job
    # id, otherwise "/<job_id>" is appended. None: no link.
    status_page_url: str | None = None

    # Signed links to each job's results page in the outcome mails (``/results/<job_id>``
    # of the gateway at ``results_page_url``, its public URL). The secret is shared with
    # the gateway (its RESULTS_LINK_SECRET); a link expires ``results_link_ttl_seconds``
    # after its mail. Without both, the mails link to ``status_page_url`` if set.
    results_page_url: str | None = None
    results_link_secret: SecretStr | None = None
    results_link_ttl_seconds: int = Field(default=30 * 86_400, ge=60)

    # Apps' outcome webhooks: one POST may take ``webhook_timeout_seconds``; a failed one is
    # tried again after a wait doubling from ``webhook_retry_base_seconds`` up to
    # ``webhook_retry_max_seconds`` (with jitter), ``webhook_max_attempts`` times in all.
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    webhook_max_attempts: int = Field(default=8, ge=1, le=50)
    webhook_retry_base_seconds: float = Field(default=30.0, gt=0)
    webhook_retry_max_seconds: float = Field(default=3600.0, gt=0)

    # Events handled at once: the more in hand, the more of their store writes share one
    # command (bench/README.md measures it).
    concurrency: int = Field(default=64, ge=1)
    # SMTP connections kept open: a mail waits for a free one. Half the events in hand: each
    # mail spends most of its time waiting on the relay, so more connections carry more mails
    # a second (32 against 8: +12 % jobs/s, bench/README.md). Set it to a relay's limit on
    # connections per client where it has one (Microsoft 365: 3).
    smtp_connections: int = Field(default=32, ge=1, le=256)

    @model_validator(mode="after")
    def _claims_outlive_sends(self) -> Self:
        if self.claim_timeout_seconds <= self.smtp_timeout_seconds:
            raise ValueError(
                "claim_timeout_seconds must be longer than smtp_timeout_seconds: a claim "
                "taken over while its sender is still at work would send the mail twice"
            )
        if self.claim_timeout_seconds <= self.webhook_timeout_seconds:
            raise ValueError(
                "claim_timeout_seconds must be longer than webhook_timeout_seconds: a "
                "delivery taken over while its sender is still at work would be POSTed twice"
            )
        return self
