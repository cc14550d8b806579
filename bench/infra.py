"""The benchmark's own servers, on its own ports, so that it never disturbs anything else.

Kafka and the SMTP sink come from `jobplane_local` (the same classes `make up` uses), under
`.local/bench/`. The store is `secantusd-rs`: jobplane_local's "store" service where it has one,
otherwise started here the same way.
Redis (Debian's `redis-server`) is Celery's broker and result backend.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobplane_local import infra
from jobplane_local.config import LocalConfig
from jobplane_local.kafka import Kafka
from jobplane_local.paths import default_local_dir
from jobplane_local.processes import port_open, require_tool
from jobplane_local.service import Log, Port, Service
from jobplane_local.smtp import SmtpSink

HOST = "127.0.0.1"
KAFKA_PORT = 9300
KAFKA_CONTROLLER_PORT = 9301
REDIS_PORT = 9310
STORE_PORT = 27300
SMTP_PORT = 1300
GATEWAY_PORT = 8300
BACKEND_PORT = 8301

STORE_VERSION = "0.5.3-beta.196"
STORE_BINARY = (
    Path.home() / ".cache/jobplane" / f"secantusd-rs-{STORE_VERSION}" / "bin/secantusd-rs"
)


# The local store's port setting: `store_port` once jobplane_local runs secantusd-rs itself.
_STORE_PORT_FIELD = next(
    f.name for f in dataclasses.fields(LocalConfig) if f.name in ("store_port", "ferretdb_port")
)


def bench_config() -> LocalConfig:
    local_dir = Path(os.environ.get("JOBPLANE_BENCH_DIR") or default_local_dir() / "bench")
    ports: dict[str, Any] = {_STORE_PORT_FIELD: STORE_PORT}
    return LocalConfig(
        local_dir=local_dir.resolve(),
        kafka_port=KAFKA_PORT,
        kafka_controller_port=KAFKA_CONTROLLER_PORT,
        smtp_port=SMTP_PORT,
        mail_dir=local_dir.resolve() / "smtp" / "mail",
        kafka_heap="1g",
        **ports,
    )


def store_port(config: LocalConfig) -> int:
    port: int = getattr(config, _STORE_PORT_FIELD)
    return port


class SecantusStore(Service):
    """The local store, `secantusd-rs`, as a one-node replica set on the bench's port."""

    name = "store"

    @property
    def marker(self) -> str:
        return f"--storage-path {self.data_dir}"

    @property
    def ports(self) -> list[Port]:
        return [Port(store_port(self.config), "the bench store", "-")]

    def install(self, log: Log) -> None:
        if not STORE_BINARY.exists():
            raise RuntimeError(
                f"{STORE_BINARY} is missing: build it with `cargo install --locked"
                f" --ignore-rust-version --version {STORE_VERSION} --root"
                f" {STORE_BINARY.parent.parent} secantus-mdb`"
            )

    def command(self) -> list[str]:
        return [
            str(STORE_BINARY),
            "--host", self.config.host,
            "--port", str(store_port(self.config)),
            "--storage-path", str(self.data_dir),
            "--log-level", "WARNING",
            "--cache-size", "1G",
        ]  # fmt: skip

    def ready(self) -> bool:
        return port_open(self.config.host, store_port(self.config))


class RedisServer(Service):
    """Debian's redis-server: Celery's broker and result backend.

    Durability like Kafka's here: an append-only file written through the page cache
    (`appendfsync everysec`, Redis' recommended setting), no RDB snapshots in the middle of a run.
    """

    name = "redis"

    @property
    def marker(self) -> str:
        return "redis-server"

    @property
    def ports(self) -> list[Port]:
        return [Port(REDIS_PORT, "the bench Redis", "-")]

    def install(self, log: Log) -> None:
        if shutil.which("redis-server"):
            return
        log("redis: installing Debian's redis-server (apt-get)")
        apt = require_tool("apt-get", "install redis-server with your package manager")
        for argv in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "redis-server"]):
            subprocess.run(argv, check=True, capture_output=True)  # noqa: S603

    def command(self) -> list[str]:
        return [
            require_tool("redis-server", "apt-get install redis-server"),
            "--bind", self.config.host, "--port", str(REDIS_PORT),
            "--dir", str(self.data_dir),
            "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
            "--protected-mode", "no", "--daemonize", "no",
        ]  # fmt: skip

    def ready(self) -> bool:
        return port_open(self.config.host, REDIS_PORT)


def servers(config: LocalConfig) -> list[Service]:
    # jobplane_local's own "store" service once it has one (the same secantusd-rs).
    if "store" in infra.SERVICE_NAMES:
        return [*infra.services(config, ["kafka", "store", "smtp"]), RedisServer(config)]
    return [Kafka(config), SecantusStore(config), SmtpSink(config), RedisServer(config)]


@dataclass(frozen=True)
class BenchServers:
    config: LocalConfig

    @property
    def kafka_bootstrap(self) -> str:
        return self.config.kafka_bootstrap

    @property
    def mongodb_uri(self) -> str:
        return self.config.mongodb_uri

    @property
    def redis_url(self) -> str:
        return f"redis://{HOST}:{REDIS_PORT}"

    @property
    def mail_dir(self) -> Path:
        return self.config.smtp_mail_dir

    def pids(self) -> dict[str, int]:
        found = {s.name: s.pid() for s in servers(self.config)}
        return {name: pid for name, pid in found.items() if pid is not None}

    def up(self, log: Log, only: set[str] | None = None) -> None:
        for server in servers(self.config):
            if only is None or server.name in only:
                server.start(log)

    def down(self, log: Log) -> None:
        for server in reversed(servers(self.config)):
            server.stop(log)
