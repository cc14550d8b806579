"""Building and sending one e-mail, with a Message-ID that identifies the outcome.

The Message-ID is a function of (job, outcome, recipient): if a crash between the send and
its record in the store causes a second delivery, the receiving side can recognise it.

Header values made of data (subjects with job types, job ids, trace ids) are made safe
first: no control or line-break character of any kind reaches a header, so no job's data
can stop its mail. An address that is not safe stays refused: ``MailRefusedError``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from email.header import Header
from email.message import EmailMessage, Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, parseaddr

from jobplane.events import utc_now
from jobplane.logs import fields

from jobplane_notifier.config import Settings
from jobplane_notifier.smtp import MailRefusedError, SendFailedError, SmtpPool

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


def header_safe(value: str) -> str:
    """``value`` without control, format or line/paragraph separator characters (Python's
    ``splitlines()`` breaks at \\x1c-\\x1e, \\x85, \\u2028 too), each replaced by a space."""
    return "".join(" " if unicodedata.category(ch)[0] in "CZ" and ch != " " else ch for ch in value)


class Mailer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.domain = domain_of(settings.mail_from)
        self.pool = SmtpPool(settings, settings.concurrency)

    def build(self, mail: Mail) -> Message:
        """The message; raises ValueError for an address that cannot be a header.

        Built with the compat32 classes (``email.mime``): about a fifth of the CPU of
        ``EmailMessage`` with the default policy, which was most of the notifier's cost per
        mail. An address that is not ASCII takes the ``EmailMessage`` way (SMTPUTF8)."""
        if header_safe(mail.to) != mail.to or "," in mail.to:
            raise ValueError(f"address {mail.to!r} contains characters no header can carry")
        if not mail.to.isascii():
            return self._build_utf8(mail)
        msg = MIMEMultipart("alternative")
        for name, value in self._headers(mail):
            msg[name] = value if value.isascii() else Header(value, "utf-8")  # type: ignore[assignment]
        msg.attach(MIMEText(mail.text, "plain", "utf-8"))
        msg.attach(MIMEText(mail.html, "html", "utf-8"))
        return msg

    def _build_utf8(self, mail: Mail) -> EmailMessage:
        msg = EmailMessage()
        for name, value in self._headers(mail):
            msg[name] = value
        msg.set_content(mail.text)
        msg.add_alternative(mail.html, subtype="html")
        return msg

    def _headers(self, mail: Mail) -> list[tuple[str, str]]:
        headers = [
            ("From", self.settings.mail_from),
            ("To", mail.to),
            ("Subject", header_safe(mail.subject)),
            ("Date", format_datetime(utc_now())),
            ("Message-ID", mail.message_id),
            ("Auto-Submitted", "auto-generated"),
        ]
        headers.extend((name, header_safe(value)) for name, value in mail.headers.items())
        return headers

    async def send(self, mail: Mail) -> None:
        """Send or raise ``MailRefusedError`` (permanent) or ``SendFailedError`` (transient)."""
        try:
            message = self.build(mail)
        except ValueError as exc:
            raise MailRefusedError(f"mail to {mail.to!r} cannot be built: {exc}") from exc
        try:
            # The whole send, not each command, is bounded: a claim outlives it.
            async with asyncio.timeout(self.settings.smtp_timeout_seconds):
                await self.pool.send(message)
        except TimeoutError as exc:
            raise SendFailedError("SMTP send timed out", maybe_delivered=True) from exc
        log.info("mail sent", extra=fields(to=mail.to, message_id=mail.message_id))

    async def aclose(self) -> None:
        await self.pool.aclose()
