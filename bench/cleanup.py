"""What the runs wrote (databases, topics, mail) is deleted when the invocation ends, and what
earlier invocations left is deleted at its start.

Why not after each run: on this machine's disk (ext4 mounted with `discard`), writes into
blocks freed shortly before cost the kernel several times more. Deleted between runs, each
run's files made the next run pay for them (`bench/README.md`, 5 December): the SMTP sink's
CPU per mail doubled, and every process's CPU per job rose.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jobplane_local.service import Log

# The names of every run's topics and database, and of the raw floor's, begin with it.
RUN_PREFIX = "bench"


class Cleanup:
    """Deletions deferred to the end of the invocation, and the directory that the runs'
    mail is moved into (`bench.mail.set_aside`)."""

    def __init__(self, mail_set_aside: Path, log: Log) -> None:
        self.mail_set_aside = mail_set_aside
        self.log = log
        self._deletions: list[Callable[[], None]] = []

    def later(self, deletion: Callable[[], None]) -> None:
        """Delete something when the invocation ends (``run``), not now."""
        self._deletions.append(deletion)

    def run(self) -> None:
        """The deferred deletions, each once; the servers must still be up."""
        while self._deletions:
            deletion = self._deletions.pop(0)
            try:
                deletion()
            except Exception as exc:  # one failed deletion must not keep the others
                self.log(f"clean-up failed: {exc!r}")
        shutil.rmtree(self.mail_set_aside, ignore_errors=True)

    def remove_leftovers(self, kafka_bootstrap: str, mongodb_uri: str) -> None:
        """What earlier invocations left (one killed before its clean-up): the broker and the
        store would carry it through every run. Before the unmeasured runs."""
        delete_topics(kafka_bootstrap, RUN_PREFIX)
        drop_databases(mongodb_uri, RUN_PREFIX)
        shutil.rmtree(self.mail_set_aside, ignore_errors=True)


def delete_topics(bootstrap: str, prefix: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    ours = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    if ours:
        for future in admin.delete_topics(ours).values():
            future.exception(timeout=30)


def drop_databases(uri: str, prefix: str) -> None:
    """Drop the databases whose names begin with ``prefix`` (a run's: its whole name)."""
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]] = MongoClient(uri)
    try:
        for name in client.list_database_names():
            if name.startswith(prefix):
                client.drop_database(name)
    finally:
        client.close()
