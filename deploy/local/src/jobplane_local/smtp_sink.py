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


_Message = tuple[str, list[str], bytes]  # mail_from, rcpt_tos, the raw bytes


def _store_batch(mailbox: Path, messages: list[_Message]) -> list[OSError | None]:
    """Store each message; what went wrong with each (None: stored)."""
    errors: list[OSError | None] = []
    for mail_from, rcpt_tos, raw in messages:
        try:
            store_message(mailbox, mail_from, rcpt_tos, raw)
            errors.append(None)
        except OSError as exc:  # a message that cannot be stored fails alone
            errors.append(exc)
    return errors


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

    Messages are stored by one thread, in batches: those that arrive while a batch is being
    written go in the next one, so the hand-over to the thread is paid per batch, not per
    message. Each message is answered once it is on disk.

    A stopping sink, like a real MTA, finishes the messages it is storing (the client gets
    its 250) and refuses new ones with 421; cut off between storing a message and answering,
    the client would send it again (at-least-once, the same Message-ID)."""

    def __init__(self, mailbox: Path) -> None:
        self.mailbox = mailbox
        self.stopping = False
        # Messages not yet being written, each with its answer to come: stored, or why not.
        self._pending: list[tuple[_Message, asyncio.Future[OSError | None]]] = []
        self._writing: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.stopping:
            return "421 jobplane-smtp-sink shutting down: try again later"
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", errors="surrogateescape")
        stored: asyncio.Future[OSError | None] = asyncio.get_running_loop().create_future()
        self._pending.append(((envelope.mail_from or "", list(envelope.rcpt_tos), raw), stored))
        if self._writing is None:
            self._idle.clear()
            self._writing = asyncio.create_task(self._write_batches())
        error = await stored
        if error is not None:
            # A full or failing disk is passing: 4xx, so that the client sends it again later
            # (a 5xx would tell it the message can never be delivered).
            return f"451 jobplane-smtp-sink cannot store the message now: {error.strerror or error}"
        return "250 Message accepted for delivery"

    async def _write_batches(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                errors = await asyncio.to_thread(
                    _store_batch, self.mailbox, [message for message, _ in batch]
                )
                for (_, stored), error in zip(batch, errors, strict=True):
                    stored.set_result(error)
        finally:
            self._writing = None
            self._idle.set()

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
