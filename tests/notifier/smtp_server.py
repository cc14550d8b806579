"""A real SMTP server for the notifier's tests whose answers a test chooses: it refuses some
recipients for good (550) or for now (451), leaves some unanswered, counts connections, and
keeps what it accepts in its own mailbox, like the sink."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP
from jobplane_local import Mailbox
from jobplane_local.smtp_sink import MailboxHandler


@dataclass
class Rules:
    refuse: set[str] = field(default_factory=set)  # 550 on RCPT
    busy: dict[str, int] = field(default_factory=dict)  # address → how many 451s first
    stall: set[str] = field(default_factory=set)  # RCPT never answered
    connections: int = 0


class RuledHandler(MailboxHandler):
    def __init__(self, mailbox: Path, rules: Rules) -> None:
        super().__init__(mailbox)
        self.rules = rules

    async def handle_RCPT(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.rules.refuse:
            return "550 5.1.1 no such mailbox"
        if address in self.rules.stall:
            await asyncio.Event().wait()  # until the client gives up and hangs up
        if self.rules.busy.get(address, 0) > 0:
            self.rules.busy[address] -= 1
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"


class CountingSMTP(SMTP):
    def __init__(self, handler: RuledHandler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.rules = handler.rules

    def connection_made(self, transport: Any) -> None:
        self.rules.connections += 1
        super().connection_made(transport)


@dataclass
class SmtpUnderTest:
    port: int
    rules: Rules
    mailbox: Mailbox


@asynccontextmanager
async def smtp_server(directory: Path, rules: Rules | None = None) -> AsyncIterator[SmtpUnderTest]:
    rules = rules or Rules()
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    loop = asyncio.get_running_loop()
    handler = RuledHandler(directory, rules)
    server = await loop.create_server(
        partial(CountingSMTP, handler, hostname="test-smtp"), sock=sock
    )
    try:
        yield SmtpUnderTest(port, rules, Mailbox(directory))
    finally:
        server.close()
        await server.wait_closed()
