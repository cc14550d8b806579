"""What the test suite's `infra` fixture returns, and how it finds (or starts) the servers."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from jobplane_local.infra import Log, up
from jobplane_local.processes import LocalInfraError


@dataclass(frozen=True)
class Infra:
    """Where the servers for a test run are."""

    kafka_bootstrap: str
    mongodb_uri: str
    smtp_host: str
    smtp_port: int
    mail_dir: Path


def _quiet(_: str) -> None:
    pass


def infra_from_env(log: Log = _quiet) -> Infra:
    """Servers named by env vars, the local infrastructure (started if needed) for the rest.

    KAFKA_BOOTSTRAP_SERVERS, MONGODB_URI, and SMTP_HOST + SMTP_PORT + SMTP_SINK_DIR each replace
    one local server; whatever is not given is started with `jobplane_local.up()`.
    """
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    mongodb = os.environ.get("MONGODB_URI")
    smtp_host = os.environ.get("SMTP_HOST")
    missing = [
        name
        for name, given in (("kafka", kafka), ("store", mongodb), ("smtp", smtp_host))
        if not given
    ]
    local = up(only=missing, log=log) if missing else None
    if smtp_host:
        sink_dir = os.environ.get("SMTP_SINK_DIR")
        if not sink_dir:
            raise LocalInfraError(
                "SMTP_HOST is set but SMTP_SINK_DIR is not: the tests read delivered mail"
                " from the SMTP sink's mailbox directory"
            )
        smtp_port = int(os.environ.get("SMTP_PORT") or "25")
        mail_dir = Path(sink_dir)
    else:
        assert local is not None
        smtp_host, smtp_port, mail_dir = local.smtp_host, local.smtp_port, local.mail_dir
    kafka = kafka or (local.kafka_bootstrap if local else "")
    mongodb = mongodb or (local.mongodb_uri if local else "")
    return Infra(
        kafka_bootstrap=kafka,
        mongodb_uri=mongodb,
        smtp_host=smtp_host,
        smtp_port=smtp_port,
        mail_dir=mail_dir,
    )
