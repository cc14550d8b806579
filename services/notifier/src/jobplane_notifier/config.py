"""Settings of the notifier service, read from environment variables."""

from __future__ import annotations

from typing import Self

from jobplane.config import CommonSettings
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

    # Platform-wide administrators, alerted of every dead job; env: a JSON list.
    admin_emails: list[str] = Field(default_factory=list)
    # Base URL of a status page for links in mails: "{job_id}" in it is replaced by the job
    # id, otherwise "/<job_id>" is appended. None: no link.
    status_page_url: str | None = None

    # Events handled at once.
    concurrency: int = Field(default=8, ge=1)

    @model_validator(mode="after")
    def _claims_outlive_sends(self) -> Self:
        if self.claim_timeout_seconds <= self.smtp_timeout_seconds:
            raise ValueError(
                "claim_timeout_seconds must be longer than smtp_timeout_seconds: a claim "
                "taken over while its sender is still at work would send the mail twice"
            )
        return self
