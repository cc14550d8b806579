"""An SMTP server that accepts every message and stores it in a mailbox directory.

Each message becomes `<time>-<id>.eml` (the raw bytes as received) plus `<time>-<id>.json`
(`mail_from`, `rcpt_tos`, `received_at`); see `jobplane_local.mailbox` for the reader.

    python -m jobplane_local.smtp_sink --host 127.0.0.1 --port 1025 --mailbox .local/smtp/mail
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def store_message(mailbox: Path, mail_from: str, rcpt_tos: Sequence[str], raw: bytes) -> Path:
    """Store one message in `mailbox`; return the path of its `.eml`. The `.json` comes last."""
    mailbox.mkdir(parents=True, exist_ok=True)
    stem = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
    eml = mailbox / f"{stem}.eml"
    _write_atomically(eml, raw)
    envelope = {
        "mail_from": mail_from,
        "rcpt_tos": list(rcpt_tos),
        "received_at": datetime.now(UTC).isoformat(),
    }
    _write_atomically(mailbox / f"{stem}.json", json.dumps(envelope, indent=2).encode())
    return eml


class MailboxHandler:
    """aiosmtpd handler: accept all recipients, store every message.

    A stopping sink, like a real MTA, finishes the messages it is storing (the client gets
    its 250) and refuses new ones with 421; cut off between storing a message and answering,
    the client would send it again (at-least-once, the same Message-ID)."""

    def __init__(self, mailbox: Path) -> None:
        self.mailbox = mailbox
        self.stopping = False
        self._storing = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.stopping:
            return "421 jobplane-smtp-sink shutting down: try again later"
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", errors="surrogateescape")
        self._storing += 1
        self._idle.clear()
        try:
            await asyncio.to_thread(
                store_message, self.mailbox, envelope.mail_from or "", envelope.rcpt_tos, raw
            )
        finally:
            self._storing -= 1
            if not self._storing:
                self._idle.set()
        return "250 Message accepted for delivery"

    async def finish(self, timeout_seconds: float = 5.0) -> None:
        """Refuse new messages; wait for those being stored, and for their answers to go."""
        self.stopping = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_seconds)
        await asyncio.sleep(0.2)  # the session writes the 250 after handle_DATA returns


async def serve(host: str, port: int, mailbox: Path) -> None:
    """Run the sink until SIGTERM/SIGINT. The mailbox directory must exist."""
    handler = MailboxHandler(mailbox)
    loop = asyncio.get_running_loop()
    factory = partial(SMTP, handler, hostname="jobplane-smtp-sink", enable_SMTPUTF8=True)
    server = await loop.create_server(factory, host=host, port=port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"SMTP sink listening on {host}:{port}, mailbox {mailbox}", flush=True)
    async with server:
        await stop.wait()
        server.close()  # no new connections
        await handler.finish()
    print("SMTP sink stopped", flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--mailbox", type=Path, default=Path(".local/smtp/mail"))
    args = parser.parse_args(argv)
    mailbox: Path = args.mailbox.resolve()
    mailbox.mkdir(parents=True, exist_ok=True)
    try:
        asyncio.run(serve(args.host, args.port, mailbox))
    except OSError as exc:
        sys.exit(f"SMTP sink cannot listen on {args.host}:{args.port}: {exc}")


if __name__ == "__main__":
    main()
