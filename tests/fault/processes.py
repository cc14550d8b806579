"""Process control of the fault suite: its own Kafka, store and SMTP sink, the four Jobplane
services and the test backend, each a separate process on the suite's own ports, and the
faults (kill -9 and restart, stop for a while and start again).

Ports (free for this suite on shared machines): Kafka 9200/9201, store 27200, SMTP 1200,
gateway 8200, backend 8201. Everything is written under `.local/fault/` (or
`JOBPLANE_FAULT_DIR`): `infra/` for the servers, `<scenario>/<service>/` for the services'
logs.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from jobplane_local import LocalConfig, down, infra, up
from jobplane_local.infra import endpoints
from jobplane_local.paths import default_local_dir, repo_root
from jobplane_local.platform import PlatformProcess
from jobplane_local.processes import port_open

KAFKA_PORT = 9200
KAFKA_CONTROLLER_PORT = 9201
STORE_PORT = 27200
SMTP_PORT = 1200
GATEWAY_PORT = 8200
BACKEND_PORT = 8201

ADMIN_KEY = "fault-suite-admin-key"
RETRY_DELAYS = [1.0, 1.0, 2.0, 2.0, 3.0]
JITTER = 0.1
JOB_TIMEOUT_SECONDS = 10
SERVICES = ("gateway", "dispatcher", "retry", "notifier")


def _log(message: str) -> None:
    print(f"[fault {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def fault_dir() -> Path:
    return Path(os.environ.get("JOBPLANE_FAULT_DIR") or default_local_dir() / "fault").resolve()


@contextmanager
def _env(**values: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def infra_config() -> LocalConfig:
    """jobplane-local's settings for the suite's own servers (its `up`/`down` with `only=`)."""
    with _env(
        JOBPLANE_LOCAL_DIR=str(fault_dir() / "infra"),
        JOBPLANE_KAFKA_PORT=str(KAFKA_PORT),
        JOBPLANE_KAFKA_CONTROLLER_PORT=str(KAFKA_CONTROLLER_PORT),
        JOBPLANE_STORE_PORT=str(STORE_PORT),
        JOBPLANE_SMTP_PORT=str(SMTP_PORT),
        JOBPLANE_SMTP_MAIL_DIR=str(fault_dir() / "infra" / "smtp" / "mail"),
        JOBPLANE_KAFKA_HEAP="512m",
    ):
        return LocalConfig.from_env()


@dataclass
class Infra:
    """Kafka, the store and the SMTP sink of the suite; each can be stopped and started."""

    config: LocalConfig = field(default_factory=infra_config)

    @property
    def mongodb_uri(self) -> str:
        return self.config.mongodb_uri

    @property
    def mail_dir(self) -> Path:
        return self.config.smtp_mail_dir

    def start(self, *names: str) -> None:
        """Start (or reuse) the named servers, all three by default; return once ready."""
        up(self.config, only=names or None, log=_log)

    def stop(self, *names: str) -> None:
        down(self.config, only=names or None, log=_log)

    def kill(self, name: str) -> None:
        """SIGKILL the named server, as a crash would; `start` brings it back."""
        for server in infra.services(self.config, [name]):
            server.kill(_log)


class BackendProcess(PlatformProcess):
    """The suite's app backend (`tests.fault.backend`) as a process of its own."""

    def __init__(self, config: LocalConfig, receipts: Path) -> None:
        super().__init__(config, "backend", {"PYTHONPATH": str(repo_root())}, BACKEND_PORT)
        self.receipts = receipts

    @property
    def marker(self) -> str:
        return f"tests.fault.backend --port {self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "tests.fault.backend",
            "--port", str(self.port),
            "--receipts", str(self.receipts),
        ]  # fmt: skip


@dataclass
class Deployment:
    """The four services of one scenario: own topics (prefix), consumer groups, database and
    log directory, so that nothing of an earlier scenario is seen again."""

    name: str
    infra: Infra
    processes: dict[str, PlatformProcess] = field(default_factory=dict)

    def __post_init__(self) -> None:
        config = LocalConfig(local_dir=fault_dir() / self.name)
        for name in SERVICES:
            port = GATEWAY_PORT if name == "gateway" else None
            self.processes[name] = PlatformProcess(config, name, self.environment(name), port)

    @property
    def database(self) -> str:
        return f"fault_{self.name}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{GATEWAY_PORT}"

    @property
    def platform_admin(self) -> str:
        return f"ops-{self.name}@fault.example"

    def environment(self, service: str) -> dict[str, str]:
        common = {
            **endpoints(self.infra.config).service_env(),
            "TOPIC_PREFIX": f"fault-{self.name}.",
            "TOPIC_PARTITIONS": "3",
            "MONGODB_DATABASE": self.database,
            "LOG_LEVEL": "INFO",
            # An event not acted on is re-published by the relay after this (30 s by
            # default); short, like the retry delays, so that a run sees the relay rescue
            # what a Kafka outage left unannounced (or a consumer left unconsumed).
            "ANNOUNCE_GRACE_SECONDS": "5",
        }
        own = {
            "gateway": {
                "ADMIN_API_KEY": ADMIN_KEY,
                "HOST": "127.0.0.1",
                "PORT": str(GATEWAY_PORT),
                "PUBLIC_URL": self.gateway_url,
                "RELAY_INTERVAL_SECONDS": "1",
            },
            "dispatcher": {
                "GROUP_ID": f"fault-{self.name}.dispatcher",
                "GATEWAY_PUBLIC_URL": self.gateway_url,
                "REQUEST_TIMEOUT_SECONDS": "5",
                "DEADLINE_CHECK_INTERVAL_SECONDS": "1",
            },
            "retry": {
                "ROUTER_GROUP_ID": f"fault-{self.name}.retry-router",
                "TIERS_GROUP_ID": f"fault-{self.name}.retry-tiers",
                "RETRY_DELAYS_SECONDS": json.dumps(RETRY_DELAYS),
                "JITTER": str(JITTER),
            },
            "notifier": {
                "GROUP_ID": f"fault-{self.name}.notifier",
                "SMTP_TIMEOUT_SECONDS": "5",
                # A mail claimed by a notifier that then died is sent by another after this
                # (120 s by default); short, like the retry delays, so that a run can see it.
                "CLAIM_TIMEOUT_SECONDS": "15",
                "ADMIN_EMAILS": json.dumps([self.platform_admin]),
            },
        }[service]
        return {**common, **own}

    def start(self, *names: str) -> None:
        """Start the services (all four by default) side by side; return once all are ready."""
        _wait_until_free(GATEWAY_PORT)  # the previous scenario's gateway may still be exiting
        with ThreadPoolExecutor(max_workers=len(SERVICES)) as pool:
            for started in [pool.submit(self.processes[n].start, _log) for n in names or SERVICES]:
                started.result()

    def kill(self, name: str) -> None:
        self.processes[name].kill(_log)

    def stop(self) -> None:
        for name in reversed(SERVICES):
            self.processes[name].stop(_log)


log = _log


def _wait_until_free(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while port_open("127.0.0.1", port) and time.monotonic() < deadline:
        time.sleep(0.2)
