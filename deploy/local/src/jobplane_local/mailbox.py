"""Reading the SMTP sink's mailbox: one `<id>.eml` (raw message) + `<id>.json` (envelope) each.

The sink writes the `.eml` first and the `.json` last, both atomically, so a message is listed
only once it is complete.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path


@dataclass(frozen=True)
class ReceivedMail:
    """One message received by the SMTP sink, with its SMTP envelope."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage = field(compare=False)  # compared through `path`
    path: Path
    """The raw message (`.eml`); its envelope is beside it in the `.json` of the same name."""
    received_at: datetime | None = None

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))

    def text(self) -> str:
        """The plain-text body (or the first text part), decoded."""
        part = self.message.get_body(preferencelist=("plain", "html"))
        if part is None:
            return ""
        content = part.get_content()
        return content if isinstance(content, str) else ""


def read_mail(envelope_file: Path) -> ReceivedMail:
    envelope = json.loads(envelope_file.read_text())
    eml = envelope_file.with_suffix(".eml")
    # Stored as received (CRLF line ends); parsed with LF line ends like any local text.
    raw = eml.read_bytes().replace(b"\r\n", b"\n")
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    received_at = envelope.get("received_at")
    return ReceivedMail(
        mail_from=str(envelope["mail_from"]),
        rcpt_tos=[str(r) for r in envelope["rcpt_tos"]],
        message=message,
        path=eml,
        received_at=datetime.fromisoformat(received_at) if received_at else None,
    )


def read_mailbox(directory: Path) -> list[ReceivedMail]:
    """All complete messages in `directory`, oldest first (an absent directory is empty)."""
    if not directory.is_dir():
        return []
    return [read_mail(p) for p in sorted(directory.glob("*.json")) if not p.name.startswith(".")]


Predicate = Callable[[ReceivedMail], bool]


def _all(_: ReceivedMail) -> bool:
    return True


@dataclass(frozen=True)
class Mailbox:
    """A view of the sink's mailbox. The directory is shared: filter by recipient or subject."""

    directory: Path

    def read(self, where: Predicate = _all) -> list[ReceivedMail]:
        return [m for m in read_mailbox(self.directory) if where(m)]

    def to(self, address: str) -> list[ReceivedMail]:
        """Messages whose envelope recipients include `address` (case-insensitive)."""
        wanted = address.lower()
        return self.read(lambda m: wanted in (r.lower() for r in m.rcpt_tos))

    async def wait_for(
        self, where: Predicate = _all, *, count: int = 1, within: float = 10.0
    ) -> list[ReceivedMail]:
        """Wait until at least `count` messages match; return them. TimeoutError otherwise."""
        deadline = time.monotonic() + within
        while True:
            found = self.read(where)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"expected {count} matching message(s) in {self.directory} within"
                    f" {within}s, found {len(found)}"
                )
            await asyncio.sleep(0.1)

    async def wait_for_recipient(
        self, address: str, *, count: int = 1, within: float = 10.0
    ) -> list[ReceivedMail]:
        wanted = address.lower()
        return await self.wait_for(
            lambda m: wanted in (r.lower() for r in m.rcpt_tos), count=count, within=within
        )
