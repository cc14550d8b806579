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
from typing import IO, Any, ClassVar

from aiosmtpd.smtp import SMTP

_Message = tuple[str, list[str], bytes]  # mail_from, rcpt_tos, the raw bytes
_MAX_PARSED_ADDRESSES = 10_000


def store_message(mailbox: Path, mail_from: str, rcpt_tos: Sequence[str], raw: bytes) -> Path:
    """Store one message in `mailbox`; return the path of its `.eml`. The `.json` comes last."""
    [(eml, error)] = store_batch(mailbox, [(mail_from, list(rcpt_tos), raw)])
    if error is not None:
        raise error
    return eml


def store_batch(mailbox: Path, messages: list[_Message]) -> list[tuple[Path, OSError | None]]:
    """Store messages; for each, its `.eml` and what went wrong (None: stored).

    Every file is written under a temporary name and synced, then every `.eml` is renamed,
    then every `.json` (the mark that a message is whole), and the directory is synced once:
    the names are on disk too before any message is answered. (Syncing the files side by
    side, from a pool of threads, stored more mails per second on a sink alone but cost it
    more CPU per mail beside the platform, for no more jobs per second.)"""
    stems = [mailbox / f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}" for _ in messages]
    errors: list[OSError | None] = [None] * len(messages)
    try:
        mailbox.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        errors = [exc] * len(messages)
    emls = [stem.with_suffix(".eml") for stem in stems]
    envelopes = [_envelope(mail_from, rcpt_tos) for mail_from, rcpt_tos, _ in messages]
    written = _write_all(emls, [raw for _, _, raw in messages], errors)
    written += _write_all([stem.with_suffix(".json") for stem in stems], envelopes, errors)
    for file in written:
        n, error = _sync_and_close(file)
        errors[n] = errors[n] or error
    for n, tmp, path, _ in written:  # every .eml before the first .json
        try:
            if errors[n] is None:
                tmp.replace(path)
            else:
                tmp.unlink(missing_ok=True)
        except OSError as exc:
            errors[n] = errors[n] or exc
    try:
        _sync_directory(mailbox)
    except OSError as exc:
        errors = [error or exc for error in errors]
    return list(zip(emls, errors, strict=True))


_Written = tuple[int, Path, Path, IO[bytes]]  # message index, temporary path, final path, file


def _envelope(mail_from: str, rcpt_tos: list[str]) -> bytes:
    received_at = datetime.now(UTC).isoformat()
    envelope = {"mail_from": mail_from, "rcpt_tos": rcpt_tos, "received_at": received_at}
    return json.dumps(envelope, indent=2).encode()


def _write_all(
    paths: list[Path], contents: list[bytes], errors: list[OSError | None]
) -> list[_Written]:
    """Write each file under a temporary name, for each message that has not failed yet
    (``errors``, updated); the files stay open for their sync."""
    written: list[_Written] = []
    for n, (path, data) in enumerate(zip(paths, contents, strict=True)):
        if errors[n] is not None:
            continue
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            f = tmp.open("wb")
        except OSError as exc:
            errors[n] = exc
            continue
        written.append((n, tmp, path, f))
        try:
            f.write(data)
            f.flush()
        except OSError as exc:
            errors[n] = exc
    return written


def _sync_and_close(written: _Written) -> tuple[int, OSError | None]:
    n, _, _, file = written
    with file:
        try:
            os.fsync(file.fileno())
        except OSError as exc:
            return n, exc
    return n, None


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SinkSMTP(SMTP):
    """aiosmtpd's SMTP session, remembering how each MAIL and RCPT address parsed.

    aiosmtpd 1.4.6 builds a ``typing.Protocol`` class and runs the e-mail header parser for
    every address: a third of the sink's CPU per message. The result depends on the argument
    alone (and the local-part limit), and a sink sees the same few addresses over and over."""

    _parsed: ClassVar[dict[tuple[str, int], tuple[str | None, str | None]]] = {}

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        key = (arg, self.local_part_limit)
        parsed = self._parsed.get(key)
        if parsed is None:
            parsed = super()._getaddr(arg)
            if len(self._parsed) < _MAX_PARSED_ADDRESSES:
                self._parsed[key] = parsed
        return parsed


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
                results = await asyncio.to_thread(
                    store_batch, self.mailbox, [message for message, _ in batch]
                )
                for (_, stored), (_, error) in zip(batch, results, strict=True):
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
    factory = partial(SinkSMTP, handler, hostname="jobplane-smtp-sink", enable_SMTPUTF8=True)
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
