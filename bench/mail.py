"""The SMTP sink's mailbox, watched while a run goes: when did each job's e-mail arrive."""

from __future__ import annotations

import json
import os
import re
import uuid
from datetime import datetime
from pathlib import Path

from jobplane_local.mailbox import read_mail

# Both systems' e-mails name the job in a header. Reading it from the raw header block costs
# microseconds; parsing the mail with the e-mail package (Jobplane's bodies are base64) cost
# the benchmark's own process half a core at 200 e-mails/s, taken from the system it measured.
JOB_ID_HEADER = re.compile(
    rb"^X-Jobplane-Job-Id:[ \t]*([A-Za-z0-9_.:-]+)", re.MULTILINE | re.IGNORECASE
)
JOB_ID = re.compile(rb"Job ID:\s*([A-Za-z0-9_.:-]+)")


class MailWatcher:
    """E-mails to one address, by job id, with the SMTP sink's receive time (epoch seconds)."""

    def __init__(self, directory: Path, address: str) -> None:
        self.directory = directory
        self.address = address.lower()
        self.received: dict[str, float] = {}
        self.unmatched = 0  # mails to this address without a job id (should stay 0)
        self._seen: set[str] = set()

    def poll(self) -> None:
        if not self.directory.is_dir():
            return
        with os.scandir(self.directory) as entries:
            fresh = [e.name for e in entries if e.name.endswith(".json")]
        for name in fresh:
            if name in self._seen or name.startswith("."):
                continue
            self._seen.add(name)
            self._read(self.directory / name)

    def _read(self, envelope_file: Path) -> None:
        envelope = json.loads(envelope_file.read_text())
        if self.address not in (r.lower() for r in envelope["rcpt_tos"]):
            return
        received = datetime.fromisoformat(envelope["received_at"]).timestamp()
        raw = envelope_file.with_suffix(".eml").read_bytes()
        head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        match = JOB_ID_HEADER.search(head) or JOB_ID.search(raw)
        if match is not None:
            self.received.setdefault(match.group(1).decode(), received)
            return
        # An encoded body (quoted-printable, base64): let the e-mail parser decode it.
        found = re.search(r"Job ID:\s*(\S+)", read_mail(envelope_file).text())
        if found is None:
            self.unmatched += 1
        else:
            self.received.setdefault(found.group(1), received)


def set_aside(directory: Path, aside: Path) -> None:
    """Move earlier runs' mail out of the watched directory, into ``aside`` (the benchmark's
    own sink only, idle between runs). Moved, not deleted: see `bench.cleanup`."""
    if directory.is_dir():
        aside.mkdir(parents=True, exist_ok=True)
        directory.rename(aside / uuid.uuid4().hex)
    directory.mkdir(parents=True, exist_ok=True)
