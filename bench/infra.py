"""The benchmark's own servers, on its own ports, so that it never disturbs anything else.

Kafka and the SMTP sink come from `jobplane_local` (the same classes `make up` uses), under
`.local/bench/`. The store is `secantusd-rs`: jobplane_local's "store" service where it has one,
otherwise started here the same way.
Redis (Debian's `redis-server`) is Celery's broker and result backend.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from jobplane_local import infra
from jobplane_local.config import ENV_BACKGROUND_NICE, LocalConfig, nice_env
from jobplane_local.paths import default_local_dir
from jobplane_local.processes import port_open, require_tool
from jobplane_local.service import Log, Port, Service

HOST = "127.0.0.1"
KAFKA_PORT = 9300
KAFKA_CONTROLLER_PORT = 9301
REDIS_PORT = 9310
STORE_PORT = 27300
SMTP_PORT = 1300
GATEWAY_PORT = 8300
BACKEND_PORT = 8301


def bench_config() -> LocalConfig:
    local_dir = Path(os.environ.get("JOBPLANE_BENCH_DIR") or default_local_dir() / "bench")
    return LocalConfig(
        local_dir=local_dir.resolve(),
        kafka_port=KAFKA_PORT,
        kafka_controller_port=KAFKA_CONTROLLER_PORT,
        smtp_port=SMTP_PORT,
        mail_dir=local_dir.resolve() / "smtp" / "mail",
        kafka_heap="1g",
        store_port=STORE_PORT,
        background_nice=nice_env(ENV_BACKGROUND_NICE, LocalConfig.background_nice),
    )


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
    return [*infra.services(config, ["kafka", "store", "smtp"]), RedisServer(config)]


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
