"""SMTP connections kept open across messages, and what a failed send means.

A few persistent ``aiosmtplib.SMTP`` connections (``SMTP_CONNECTIONS``): a message waits for a
free one, opens it if it is closed, and sends one transaction on it (MAIL, RCPT, DATA as
separate steps, so that a failure says how far the message got). A connection whose state is
unknown after an error is closed and opened again by the next message.

What a failure means:

- refused for good (5xx on RCPT or DATA, or an address the library will not put on the
  wire) → ``MailRefusedError``, a ``PermanentError``: trying again cannot help;
- anything else (connect refused, 4xx, timeouts, the server going away) → ``SendFailedError``,
  transient. ``maybe_delivered`` is False when the failure came before DATA was sent in
  full, so nothing reached the server and the send may be repeated at once; True when the
  answer to DATA was lost (the server may have the message: only a stale claim repeats it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import NamedTuple

import aiosmtplib
from jobplane.kafka import PermanentError

from jobplane_notifier.config import Settings

log = logging.getLogger(__name__)


class MailRefusedError(PermanentError):
    """The message can never be sent as it is (bad address, header or content)."""


class SendFailedError(ConnectionError):
    """A transient failure (the exchange with the SMTP server failed, or it said "later"):
    the send is tried again later. A ``ConnectionError``, so that the event loop knows it
    for the passing kind it is."""

    def __init__(self, message: str, *, maybe_delivered: bool) -> None:
        super().__init__(message)
        self.maybe_delivered = maybe_delivered


class Outgoing(NamedTuple):
    """A message as it goes on the wire: envelope addresses, bytes, whether it needs
    SMTPUTF8 (an address is not ASCII)."""

    sender: str
    recipient: str
    data: bytes
    utf8: bool


class SmtpPool:
    def __init__(self, settings: Settings, size: int) -> None:
        self.settings = settings
        self._idle: asyncio.LifoQueue[aiosmtplib.SMTP] = asyncio.LifoQueue()
        for _ in range(size):
            self._idle.put_nowait(self._client())

    def _client(self) -> aiosmtplib.SMTP:
        s = self.settings
        return aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            start_tls=s.smtp_starttls,
            use_tls=False,
            # No timer per command: `Mailer.send` bounds the whole send (SMTP_TIMEOUT_SECONDS),
            # and a wait_for on each of a mail's four commands cost it 9 % of its CPU.
            timeout=None,
        )

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[aiosmtplib.SMTP]:
        """Wait for a free connection (it may be closed: ``send`` opens it) and lend it."""
        client = await self._idle.get()
        try:
            yield client
        except BaseException:
            client.close()  # its state is unknown: the next message opens it afresh
            raise
        finally:
            self._idle.put_nowait(client)

    async def send(self, client: aiosmtplib.SMTP, outgoing: Outgoing) -> None:
        """Send one message on a connection of ``connection()``; raises MailRefusedError or
        SendFailedError."""
        sender, recipient, data, utf8 = outgoing
        reused = client.is_connected
        try:
            if not reused:
                await client.connect()
            if utf8 and not client.supports_extension("smtputf8"):
                raise MailRefusedError(f"the SMTP server cannot take address {recipient!r}")
            options = ["SMTPUTF8"] if utf8 else None
            try:
                await client.mail(sender, options=options)
            except aiosmtplib.SMTPServerDisconnected:
                if not reused:
                    raise
                # The server closed the idle connection; nothing was sent yet: reconnect.
                client.close()
                await client.connect()
                await client.mail(sender, options=options)
            try:
                await client.rcpt(recipient)
            except aiosmtplib.SMTPRecipientRefused as exc:
                await _reset(client)
                if exc.code >= 500:
                    raise MailRefusedError(
                        f"the SMTP server refused recipient {recipient!r}: {exc.code} {exc.message}"
                    ) from exc
                raise
        except ValueError as exc:  # aiosmtplib refuses an address that is not safe to send
            raise MailRefusedError(f"address {recipient!r} cannot be sent to: {exc}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise SendFailedError(_describe(exc), maybe_delivered=False) from exc
        try:
            await client.data(data)
        except aiosmtplib.SMTPDataError as exc:  # the server answered: it does not have it
            await _reset(client)
            if exc.code >= 500:
                raise MailRefusedError(
                    f"the SMTP server refused the message: {exc.code} {exc.message}"
                ) from exc
            raise SendFailedError(_describe(exc), maybe_delivered=False) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise SendFailedError(_describe(exc), maybe_delivered=True) from exc

    async def aclose(self) -> None:
        while not self._idle.empty():
            client = self._idle.get_nowait()
            if client.is_connected:
                try:
                    async with asyncio.timeout(self.settings.smtp_timeout_seconds):
                        await client.quit()
                except (aiosmtplib.SMTPException, OSError, TimeoutError):
                    client.close()


async def _reset(client: aiosmtplib.SMTP) -> None:
    """End a failed transaction so that the connection can carry the next message."""
    try:
        await client.rset()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        client.close()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
