"""Building and sending one e-mail, with a Message-ID that identifies the outcome.

The Message-ID is a function of (job, outcome, recipient): if a crash between the send and
its record in the store causes a second delivery, the receiving side can recognise it.

Header values made of data (subjects with job types, job ids, trace ids) are made safe
first: no control or line-break character of any kind reaches a header, so no job's data
can stop its mail. An address that is not safe stays refused: ``MailRefusedError``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import random
import re
import sys
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from email.header import Header
from email.message import EmailMessage, Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, parseaddr

from aiosmtplib.email import flatten_message
from jobplane.events import utc_now
from jobplane.logs import fields

from jobplane_notifier.config import Settings
from jobplane_notifier.smtp import MailRefusedError, Outgoing, SendFailedError, SmtpPool

log = logging.getLogger(__name__)


def message_id(job_id: str, outcome: str, recipient: str, domain: str) -> str:
    """Deterministic RFC 5322 Message-ID for one outcome of one job to one recipient."""
    digest = hashlib.sha256(f"{job_id}:{outcome}:{recipient.lower()}".encode()).hexdigest()
    return f"<jobplane.{outcome}.{digest[:40]}@{domain}>"


# A bare address of the usual characters, which parseaddr returns as it is.
_BARE_ADDRESS = re.compile(r"[A-Za-z0-9_+-]+(\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")


def address_of(value: str) -> str:
    """The address in ``value`` (``Name <addr>`` or a bare address), as ``parseaddr`` reads it;
    a bare address of the usual characters without parsing it (~10 µs a mail)."""
    return value if _BARE_ADDRESS.fullmatch(value) else parseaddr(value)[1]


def domain_of(address: str) -> str:
    domain = address_of(address).rpartition("@")[2]
    return domain or "jobplane.invalid"


@dataclass(frozen=True, slots=True)
class Mail:
    to: str
    subject: str
    text: str
    html: str
    message_id: str
    headers: Mapping[str, str]


# The longest header line written as it is (RFC 5322's "SHOULD"); a longer one is folded
# by the generator.
_MAX_PLAIN_LINE = 78
# Where compat32's header folding may break a line.
_FOLD_POINTS = frozenset(" \t;,")
# Base64 line length of the generator's body encoding (email.base64mime.body_encode).
_BASE64_LINE = 76


def _plain(mail: Mail) -> bool:
    """True for a mail the direct writer can take (then the checks of build hold too)."""
    return mail.to.isascii() and header_safe(mail.to) == mail.to and "," not in mail.to


def _plain_header(name: str, value: str) -> bool:
    """ASCII, and either short or one word (no place the generator would fold it at)."""
    if not value.isascii():
        return False
    return _fits(name, value) or _FOLD_POINTS.isdisjoint(value)


def _fits(name: str, value: str) -> bool:
    return len(name) + 2 + len(value) <= _MAX_PLAIN_LINE


def _header_line(name: str, value: str) -> str:
    # A word too long for its line goes whole onto the next one, as compat32 does with a
    # Message-ID whose domain is long.
    return f"{name}: {value}\n" if _fits(name, value) else f"{name}: \n {value}\n"


def _boundary() -> str:
    # As email.generator.Generator._make_boundary: a base64 body cannot contain it.
    return "=" * 15 + f"{random.randrange(sys.maxsize):019d}" + "=="


def _base64_part(content_type: str, text: str) -> str:
    encoded = base64.b64encode(text.encode()).decode("ascii")
    # Each base64 line ends with a line break (none for an empty body), as body_encode's.
    lines = "".join(
        encoded[i : i + _BASE64_LINE] + "\n" for i in range(0, len(encoded), _BASE64_LINE)
    )
    return (
        f'Content-Type: {content_type}; charset="utf-8"\nMIME-Version: 1.0\n'
        f"Content-Transfer-Encoding: base64\n\n{lines}"
    )


def plain_bytes(headers: list[tuple[str, str]], mail: Mail, boundary: str | None = None) -> bytes:
    """What compat32's generator writes for :meth:`Mailer.build`'s message of ``mail``
    (multipart/alternative of base64 text and HTML), when every header is ASCII and either
    short or a single word."""
    boundary = boundary or _boundary()
    head = "".join(_header_line(name, value) for name, value in headers)
    return (
        f'Content-Type: multipart/alternative;\n boundary="{boundary}"\n'
        f"MIME-Version: 1.0\n{head}\n"
        f"--{boundary}\n{_base64_part('text/plain', mail.text)}\n"
        f"--{boundary}\n{_base64_part('text/html', mail.html)}\n"
        f"--{boundary}--\n"
    ).encode("ascii")


def header_safe(value: str) -> str:
    """``value`` without control, format or line/paragraph separator characters (Python's
    ``splitlines()`` breaks at \\x1c-\\x1e, \\x85, \\u2028 too), each replaced by a space."""
    if value.isprintable():  # no character of those categories but the space (the usual)
        return value
    return "".join(" " if unicodedata.category(ch)[0] in "CZ" and ch != " " else ch for ch in value)


class Mailer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.domain = domain_of(settings.mail_from)
        self._sender = address_of(settings.mail_from)
        self.pool = SmtpPool(settings, settings.smtp_connections)

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

    def encode(self, mail: Mail) -> Outgoing:
        """The envelope and the bytes of ``mail``; raises MailRefusedError.

        The usual mail (ASCII addresses and headers, short header lines) is written straight
        to the bytes compat32's generator makes of :meth:`build`'s message (a test compares
        them): the generator took 0.9 ms per mail, four times the rest of the mail's CPU.
        Anything else goes through :meth:`build` and the generator."""
        try:
            message = None if _plain(mail) else self.build(mail)
        except ValueError as exc:
            raise MailRefusedError(f"mail to {mail.to!r} cannot be built: {exc}") from exc
        recipient = address_of(mail.to)
        utf8 = not (self._sender.isascii() and recipient.isascii())
        if message is None:
            headers = self._headers(mail)
            if all(_plain_header(name, value) for name, value in headers):
                return Outgoing(self._sender, recipient, plain_bytes(headers, mail), utf8)
            message = self.build(mail)
        try:
            data = flatten_message(message, utf8=utf8)
        except ValueError as exc:
            raise MailRefusedError(f"message to {recipient!r} cannot be encoded: {exc}") from exc
        return Outgoing(self._sender, recipient, data, utf8)

    async def send(self, mail: Mail) -> None:
        """Send or raise ``MailRefusedError`` (permanent) or ``SendFailedError`` (transient)."""
        outgoing = self.encode(mail)
        sending = False
        try:
            # The wait for a connection and the whole send, not each command, are bounded: a
            # claim outlives them.
            async with (
                asyncio.timeout(self.settings.smtp_timeout_seconds),
                self.pool.connection() as client,
            ):
                sending = True
                await self.pool.send(client, outgoing)
        except TimeoutError as exc:
            # Timed out still waiting for a connection: nothing went out, it may go at once.
            raise SendFailedError("SMTP send timed out", maybe_delivered=sending) from exc
        log.info("mail sent", extra=fields(to=mail.to, message_id=mail.message_id))

    async def aclose(self) -> None:
        await self.pool.aclose()
