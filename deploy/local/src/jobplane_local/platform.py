"""The Jobplane platform on the local default: the four services and the demo app as
processes beside the local servers, for `make up`.

Each service is started from its own console script with its settings in environment
variables, exactly as it would be deployed alone; logs go to `.local/<service>/<service>.log`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobplane_local.config import LocalConfig, int_env
from jobplane_local.infra import endpoints
from jobplane_local.processes import pid_alive, port_open
from jobplane_local.service import Log, Port, Service, ServiceStatus, inherited_env

# Moved with JOBPLANE_GATEWAY_PORT / JOBPLANE_DEMO_PORT when the defaults are taken.
GATEWAY_PORT = int_env("JOBPLANE_GATEWAY_PORT", 8000)
DEMO_PORT = int_env("JOBPLANE_DEMO_PORT", 8001)
PLATFORM_ADMIN = "admin@jobplane.local"
DEMO_APP = "demo"
DEMO_USER = "alice"
DEMO_USER_EMAIL = "alice@example.com"
LOCAL_DELAYS = [5, 10, 20, 40, 80]


class GatewayError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _script(name: str) -> str:
    # The console scripts live beside the interpreter running us (the workspace's venv).
    return str(Path(sys.executable).parent / name)


class PlatformProcess(Service):
    """One Jobplane service (or the demo app) as a detached process."""

    stop_timeout = 20.0

    def __init__(
        self, config: LocalConfig, name: str, env: dict[str, str], port: int | None = None
    ) -> None:
        super().__init__(config)
        self.name = name
        self.env = env
        self.port = port

    @property
    def marker(self) -> str:
        return f"jobplane-{self.name}"

    @property
    def ports(self) -> list[Port]:
        if self.port is None:
            return []
        return [Port(self.port, f"the {self.name}", f"JOBPLANE_{self.name.upper()}_PORT")]

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.port}" if self.port else "-"

    def command(self) -> list[str]:
        return [_script(self.marker)]

    def environment(self) -> dict[str, str]:
        return inherited_env(**self.env)

    def prepare(self) -> None:
        # A fresh log per start, so that readiness is read from this run's lines only.
        if self.log_file.exists():
            self.log_file.replace(self.log_file.with_suffix(".log.1"))

    def ready(self) -> bool:
        if self.port is not None:
            return port_open(self.config.host, self.port)
        # Consumers have no port: they log "consuming" once connected and in their group.
        return self.log_file.exists() and '"msg": "consuming"' in self.log_file.read_text()

    def kill(self, log: Log) -> int | None:
        """SIGKILL the process group at once, as a crash would: no shutdown hook runs.

        Returns the pid that was killed (None if nothing ran). The next `start` is a fresh
        process with the same settings, which is how a supervisor restarts a crashed service.
        """
        pid = self.pid()
        if pid is None:
            log(f"{self.name}: not running, nothing to kill")
            return None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and pid_alive(pid):
            _reap(pid)
            time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        log(f"{self.name}: killed (SIGKILL, pid {pid})")
        return pid


def _reap(pid: int) -> None:
    """Collect a killed child of ours, so that it does not stay behind as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


@dataclass(frozen=True)
class Platform:
    config: LocalConfig
    admin_key: str

    @classmethod
    def load(cls, config: LocalConfig | None = None) -> Platform:
        config = config or LocalConfig.from_env()
        key_file = config.local_dir / "platform" / "admin.key"
        if not key_file.exists():
            key_file.parent.mkdir(parents=True, exist_ok=True)
            key_file.write_text(secrets.token_urlsafe(24))
            key_file.chmod(0o600)
        return cls(config, key_file.read_text().strip())

    @property
    def gateway_url(self) -> str:
        return f"http://{self.config.host}:{GATEWAY_PORT}"

    @property
    def demo_url(self) -> str:
        return f"http://{self.config.host}:{DEMO_PORT}"

    def processes(self) -> list[PlatformProcess]:
        common = {
            **{k: v for k, v in endpoints(self.config).env().items() if k != "SMTP_SINK_DIR"},
            "MONGODB_DATABASE": "jobplane",
            "LOG_LEVEL": "INFO",
        }
        return [
            PlatformProcess(
                self.config,
                "gateway",
                {
                    **common,
                    "ADMIN_API_KEY": self.admin_key,
                    "HOST": self.config.host,
                    "PORT": str(GATEWAY_PORT),
                    "PUBLIC_URL": self.gateway_url,
                },
                GATEWAY_PORT,
            ),
            PlatformProcess(
                self.config, "dispatcher", {**common, "GATEWAY_PUBLIC_URL": self.gateway_url}
            ),
            # Short tiers so that a retry can be watched live; production keeps the defaults
            # (30 s, 2 min, 10 min, 30 min, 1 h).
            PlatformProcess(
                self.config, "retry", {**common, "RETRY_DELAYS_SECONDS": json.dumps(LOCAL_DELAYS)}
            ),
            PlatformProcess(
                self.config, "notifier", {**common, "ADMIN_EMAILS": json.dumps([PLATFORM_ADMIN])}
            ),
            PlatformProcess(
                self.config,
                "demo",
                {
                    "DEMO_HOST": self.config.host,
                    "DEMO_PORT": str(DEMO_PORT),
                    "DEMO_OUTPUT_DIR": str(self.config.local_dir / "demo" / "thumbnails"),
                },
                DEMO_PORT,
            ),
        ]

    def up(self, log: Log) -> str:
        """Start what is not running, register the demo app and its user; return its API key."""
        for process in self.processes():
            process.start(log)
        return self._register_demo()

    def down(self, log: Log) -> None:
        for process in reversed(self.processes()):
            process.stop(log)

    def status(self) -> list[ServiceStatus]:
        return [process.status() for process in self.processes()]

    def _register_demo(self) -> str:
        key_file = self.config.local_dir / "platform" / "demo-app.key"
        if key_file.exists():
            try:
                self._register_user(key_file.read_text().strip())
                return key_file.read_text().strip()
            except GatewayError as exc:
                if exc.status != 401:
                    raise
                # The store was wiped since: register the demo app again.
        created = self._call(
            "POST",
            "/v1/apps",
            self.admin_key,
            {
                "app_id": DEMO_APP,
                "backend_url": f"{self.demo_url}/jobs",
                "default_timeout_seconds": 300,
                "admin_emails": ["demo-admin@example.com"],
            },
        )
        key_file.write_text(created["api_key"])
        key_file.chmod(0o600)
        self._register_user(created["api_key"])
        return str(created["api_key"])

    def _register_user(self, api_key: str) -> None:
        self._call(
            "PUT", f"/v1/users/{DEMO_USER}", api_key, {"email": DEMO_USER_EMAIL, "language": "en"}
        )

    def _call(self, method: str, path: str, key: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(  # noqa: S310 - always our own http:// gateway
            self.gateway_url + path,
            data=json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                answer: dict[str, Any] = json.load(response)
                return answer
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise GatewayError(exc.code, f"{method} {path} answered {exc.code}: {detail}") from None


def platform_guide(platform: Platform, api_key: str, mail_dir: Path) -> str:
    """What `make up` prints: where everything is and a job to try."""
    gw = platform.gateway_url
    return f"""
Jobplane is up.
  gateway      {gw}   (API docs: {gw}/docs)
  demo backend {platform.demo_url}   (makes thumbnails; registered as app "{DEMO_APP}")
  e-mails      {mail_dir}/   (one .eml per message, envelope in the .json beside it)
  logs         {platform.config.local_dir}/<service>/<service>.log
  admin key    {platform.config.local_dir}/platform/admin.key

Submit a thumbnail job for the demo user "{DEMO_USER}" <{DEMO_USER_EMAIL}>:

  curl -s -X POST {gw}/v1/jobs \\
    -H 'Authorization: Bearer {api_key}' -H 'Content-Type: application/json' \\
    -d '{{"user_id": "{DEMO_USER}", "job_type": "thumbnail",
         "payload": {{"width": 800, "height": 600, "color": "teal", "size": [160, 120]}}}}'

Then follow it with:  curl -s {gw}/v1/jobs/<job_id> -H 'Authorization: Bearer {api_key}'
Add "fail_times": 2 to the payload to watch two retries (locally due after {LOCAL_DELAYS[0]} s and
{LOCAL_DELAYS[1]} s), "permanent_failure": true for a dead job and the administrators' alert.
Stop everything with: make down
"""
