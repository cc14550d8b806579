"""Sending one e-mail over SMTP (aiosmtplib), with a Message-ID that identifies the outcome.

The Message-ID is a function of (job, outcome, recipient): if a crash between the send and
its record in the store causes a second delivery, the receiving side can recognise it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

import aiosmtplib
from jobplane.events import utc_now
from jobplane.logs import fields

from jobplane_notifier.config import Settings

log = logging.getLogger(__name__)


def message_id(job_id: str, outcome: str, recipient: str, domain: str) -> str:
    """Deterministic RFC 5322 Message-ID for one outcome of one job to one recipient."""
    digest = hashlib.sha256(f"{job_id}:{outcome}:{recipient.lower()}".encode()).hexdigest()
    return f"<jobplane.{outcome}.{digest[:40]}@{domain}>"


def domain_of(address: str) -> str:
    _, addr = parseaddr(address)
    domain = addr.rpartition("@")[2]
    return domain or "jobplane.invalid"


@dataclass(frozen=True, slots=True)
class Mail:
    to: str
    subject: str
    text: str
    html: str
    message_id: str
    headers: Mapping[str, str]


class Mailer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.domain = domain_of(settings.mail_from)

    def build(self, mail: Mail) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.settings.mail_from
        msg["To"] = mail.to
        msg["Subject"] = mail.subject
        msg["Date"] = format_datetime(utc_now())
        msg["Message-ID"] = mail.message_id
        msg["Auto-Submitted"] = "auto-generated"
        for name, value in mail.headers.items():
            msg[name] = value
        msg.set_content(mail.text)
        msg.add_alternative(mail.html, subtype="html")
        return msg

    async def send(self, mail: Mail) -> None:
        """Send or raise (aiosmtplib.SMTPException, OSError, TimeoutError)."""
        s = self.settings
        await aiosmtplib.send(
            self.build(mail),
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            start_tls=s.smtp_starttls,
            use_tls=False,
            timeout=s.smtp_timeout_seconds,
        )
        log.info("mail sent", extra=fields(to=mail.to, message_id=mail.message_id))
