"""What the test suite's `infra` fixture returns, and how it finds (or starts) the servers."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from jobplane_local.config import LocalConfig
from jobplane_local.infra import Log, up
from jobplane_local.processes import LocalInfraError
from jobplane_local.store import STORE_VERSION, installed_version, store_binary


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


def _require_built_store() -> None:
    """The store's first build takes minutes, longer than a test may: it is `make test`'s
    (or `jobplane-local install store`'s) job, before pytest starts."""
    binary = store_binary(LocalConfig.from_env().cache_dir)
    if installed_version(binary) != STORE_VERSION:
        raise LocalInfraError(
            f"the local store (secantusd-rs {STORE_VERSION}) is not built yet: run `make test`,"
            " or `uv run jobplane-local install store` first (about 6 minutes, once per"
            " machine), or point MONGODB_URI at a running server"
        )


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
    if "store" in missing:
        _require_built_store()
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
