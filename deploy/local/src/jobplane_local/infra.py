"""The Python API behind the `jobplane-local` CLI: start, stop and inspect the local servers."""

from __future__ import annotations

import fcntl
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from jobplane_local.config import HOST, LocalConfig
from jobplane_local.kafka import Kafka
from jobplane_local.service import Log, Service, ServiceStatus
from jobplane_local.smtp import SmtpSink
from jobplane_local.store import Store

__all__ = ["Endpoints", "Log", "down", "endpoints", "install", "services", "status", "up"]

SERVICE_NAMES = ("kafka", "store", "smtp")


@dataclass(frozen=True)
class Endpoints:
    """Where clients find the local servers."""

    kafka_bootstrap: str
    mongodb_uri: str
    smtp_host: str
    smtp_port: int
    mail_dir: Path

    def env(self) -> dict[str, str]:
        """The environment variables the services and the tests read."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "MONGODB_URI": self.mongodb_uri,
            "SMTP_HOST": self.smtp_host,
            "SMTP_PORT": str(self.smtp_port),
            "SMTP_SINK_DIR": str(self.mail_dir),
        }

    def service_env(self) -> dict[str, str]:
        """The part of ``env`` a Jobplane service reads (the sink's mail folder is the tests')."""
        return {k: v for k, v in self.env().items() if k != "SMTP_SINK_DIR"}


def _quiet(_: str) -> None:
    pass


def endpoints(config: LocalConfig | None = None) -> Endpoints:
    config = config or LocalConfig.from_env()
    return Endpoints(
        kafka_bootstrap=config.kafka_bootstrap,
        mongodb_uri=config.mongodb_uri,
        smtp_host=HOST,
        smtp_port=config.smtp_port,
        mail_dir=config.smtp_mail_dir,
    )


def services(config: LocalConfig, only: Iterable[str] | None = None) -> list[Service]:
    all_services: list[Service] = [Kafka(config), Store(config), SmtpSink(config)]
    if only is None:
        return all_services
    wanted = set(only)
    unknown = wanted - set(SERVICE_NAMES)
    if unknown:
        raise ValueError(f"unknown service(s) {sorted(unknown)}; choose from {SERVICE_NAMES}")
    return [s for s in all_services if s.name in wanted]


@contextmanager
def _lock(config: LocalConfig) -> Iterator[None]:
    """Serialise concurrent `up`/`down` calls on the same `.local/` directory."""
    config.local_dir.mkdir(parents=True, exist_ok=True)
    with (config.local_dir / "jobplane-local.lock").open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def up(
    config: LocalConfig | None = None, *, only: Iterable[str] | None = None, log: Log = _quiet
) -> Endpoints:
    """Install (first time), start (or reuse) and wait for the local servers; return endpoints.

    Idempotent: what is downloaded or built is kept under `.local/`, running servers are reused.
    Raises `LocalInfraError` (MissingToolError, PortInUseError, StartError) with a clear message.
    """
    config = config or LocalConfig.from_env()
    with _lock(config):
        for service in services(config, only):
            service.start(log)
    return endpoints(config)


def install(
    config: LocalConfig | None = None, *, only: Iterable[str] | None = None, log: Log = _quiet
) -> None:
    """Download or build what the servers need (Kafka jars, the store), without starting them."""
    config = config or LocalConfig.from_env()
    with _lock(config):
        for service in services(config, only):
            service.install(log)


def down(
    config: LocalConfig | None = None, *, only: Iterable[str] | None = None, log: Log = _quiet
) -> None:
    """Stop the local servers (SIGTERM, then SIGKILL after a timeout). Data is kept."""
    config = config or LocalConfig.from_env()
    with _lock(config):
        for service in reversed(services(config, only)):
            service.stop(log)


def status(config: LocalConfig | None = None) -> list[ServiceStatus]:
    config = config or LocalConfig.from_env()
    return [service.status() for service in services(config)]
