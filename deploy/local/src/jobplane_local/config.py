"""Configuration of the local infrastructure, read from environment variables."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from jobplane_local.paths import default_cache_dir, default_local_dir

HOST = "127.0.0.1"

# Environment variables understood by jobplane-local (all optional).
ENV_LOCAL_DIR = "JOBPLANE_LOCAL_DIR"
ENV_KAFKA_PORT = "JOBPLANE_KAFKA_PORT"
ENV_KAFKA_CONTROLLER_PORT = "JOBPLANE_KAFKA_CONTROLLER_PORT"
ENV_STORE_PORT = "JOBPLANE_STORE_PORT"
ENV_STORE_CACHE_SIZE = "JOBPLANE_STORE_CACHE_SIZE"
ENV_STORE_SYNC_ON_COMMIT = "JOBPLANE_STORE_SYNC_ON_COMMIT"
ENV_SMTP_PORT = "JOBPLANE_SMTP_PORT"
ENV_SMTP_MAIL_DIR = "JOBPLANE_SMTP_MAIL_DIR"
ENV_START_TIMEOUT = "JOBPLANE_START_TIMEOUT"
ENV_KAFKA_HEAP = "JOBPLANE_KAFKA_HEAP"
ENV_KAFKA_JVM_OPTS = "JOBPLANE_KAFKA_JVM_OPTS"
ENV_GATEWAY_PORT = "JOBPLANE_GATEWAY_PORT"
ENV_DEMO_PORT = "JOBPLANE_DEMO_PORT"
ENV_BACKGROUND_NICE = "JOBPLANE_BACKGROUND_NICE"

# The local broker's JVM options (see LocalConfig.kafka_jvm_opts).
DEFAULT_KAFKA_JVM_OPTS = "-XX:+UseSerialGC -XX:TieredStopAtLevel=1"

# The ports in use, by the name of the variable that moves them, written by `up` in
# `.local/` so that every later command (another shell, without those variables) finds the
# running servers; `down` forgets them. A variable set in the environment wins.
PORTS_FILE = "ports.json"


def remembered_ports(local_dir: Path) -> dict[str, int]:
    try:
        saved = json.loads((local_dir / PORTS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(saved, dict):
        return {}
    return {str(k): v for k, v in saved.items() if isinstance(v, int)}


def _write_ports(local_dir: Path, ports: Mapping[str, int]) -> None:
    local_dir.mkdir(parents=True, exist_ok=True)
    target = local_dir / PORTS_FILE
    staged = target.with_suffix(".tmp")
    staged.write_text(json.dumps(dict(ports), indent=2, sort_keys=True) + "\n")
    staged.replace(target)  # a reader never sees half a file


def remember_ports(local_dir: Path, ports: Mapping[str, int]) -> None:
    _write_ports(local_dir, {**remembered_ports(local_dir), **ports})


def forget_ports(local_dir: Path, names: Iterable[str]) -> None:
    gone = set(names)
    left = {k: v for k, v in remembered_ports(local_dir).items() if k not in gone}
    if left:
        _write_ports(local_dir, left)
    else:
        (local_dir / PORTS_FILE).unlink(missing_ok=True)


def int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer") from None


def nice_env(name: str, default: int) -> int:
    value = int_env(name, default)
    if not 0 <= value <= 19:
        raise ValueError(f"{name}={value} is not a nice value from 0 to 19")
    return value


def bool_env(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={raw!r} is not a boolean (1/0, true/false, yes/no, on/off)")


@dataclass(frozen=True)
class LocalConfig:
    """Ports and directories of the local Kafka, store and SMTP sink."""

    local_dir: Path
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    store_port: int = 27017
    store_cache_size: str = "512M"
    # Every acknowledged write is on disk before the store answers (see store.py).
    store_sync_on_commit: bool = True
    smtp_port: int = 1025
    mail_dir: Path | None = None
    start_timeout: float = 120.0
    kafka_heap: str = "1g"
    # The local broker's JVM: C1 only and the serial collector. Measured on two cores with a
    # broker started afresh (`make bench`): 1.3-2.3 ms of broker CPU per job against 3.0-5.1
    # with the JVM's defaults (G1, C2), whose compiler threads and concurrent collector
    # compete with the platform for the two cores; the raw Kafka floor went from 70,000 to
    # 110,000 messages/s. A long-running broker on a large machine wants the defaults.
    kafka_jvm_opts: str = DEFAULT_KAFKA_JVM_OPTS
    # The platform's HTTP servers (`jobplane-local platform`): the gateway and the demo app.
    gateway_port: int = 8000
    demo_port: int = 8001
    host: str = HOST
    # The CPU priority (nice, 0-19) of the work nobody waits for on the spot: the dispatcher
    # and the notifier. The gateway, the store and Kafka keep 0, so that a submit does not
    # wait for a core behind them: on two busy cores the gateway's event loop otherwise
    # waited for a core half to three quarters as long as it ran. 0 turns it off.
    background_nice: int = 10
    # Builds shared by every clone on the machine (the store's binary).
    cache_dir: Path = field(default_factory=default_cache_dir)

    @classmethod
    def from_env(cls) -> LocalConfig:
        local_dir = Path(os.environ.get(ENV_LOCAL_DIR) or default_local_dir()).resolve()
        mail_dir = os.environ.get(ENV_SMTP_MAIL_DIR)
        remembered = remembered_ports(local_dir)

        def port(name: str, default: int) -> int:
            return int_env(name, remembered.get(name, default))

        return cls(
            local_dir=local_dir,
            kafka_port=port(ENV_KAFKA_PORT, 9092),
            kafka_controller_port=port(ENV_KAFKA_CONTROLLER_PORT, 9093),
            store_port=port(ENV_STORE_PORT, 27017),
            store_cache_size=os.environ.get(ENV_STORE_CACHE_SIZE) or "512M",
            store_sync_on_commit=bool_env(ENV_STORE_SYNC_ON_COMMIT, True),
            smtp_port=port(ENV_SMTP_PORT, 1025),
            mail_dir=Path(mail_dir).resolve() if mail_dir else None,
            start_timeout=float(int_env(ENV_START_TIMEOUT, 120)),
            kafka_heap=os.environ.get(ENV_KAFKA_HEAP) or "1g",
            kafka_jvm_opts=os.environ.get(ENV_KAFKA_JVM_OPTS, DEFAULT_KAFKA_JVM_OPTS),
            gateway_port=port(ENV_GATEWAY_PORT, 8000),
            demo_port=port(ENV_DEMO_PORT, 8001),
            background_nice=nice_env(ENV_BACKGROUND_NICE, cls.background_nice),
        )

    def infra_ports(self) -> dict[str, int]:
        """The local servers' ports, by the variable that moves each."""
        return {
            ENV_KAFKA_PORT: self.kafka_port,
            ENV_KAFKA_CONTROLLER_PORT: self.kafka_controller_port,
            ENV_STORE_PORT: self.store_port,
            ENV_SMTP_PORT: self.smtp_port,
        }

    @property
    def smtp_mail_dir(self) -> Path:
        """Mailbox of the SMTP sink: one `.eml` + `.json` pair per received message."""
        return self.mail_dir or self.local_dir / "smtp" / "mail"

    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.host}:{self.kafka_port}"

    @property
    def mongodb_uri(self) -> str:
        return f"mongodb://{self.host}:{self.store_port}/"
