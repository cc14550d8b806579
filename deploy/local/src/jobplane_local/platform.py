"""The Jobplane platform on the local default: the four services and the demo app as
processes beside the local servers, for `make up`.

Each service is started from its own console script with its settings in environment
variables, exactly as it would be deployed alone; logs go to `.local/<service>/<service>.log`.

Settings: the caller's environment reaches every service (`RETRY_DELAYS_SECONDS=1,2 make
up`), and wins over the local defaults below (short retry delays, an administrators'
address, the database name). Only the wiring is fixed: where the local Kafka, store and SMTP
sink listen (move them with `JOBPLANE_*_PORT`), the gateway's address and the admin key.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobplane_local.config import (
    ENV_DEMO_PORT,
    ENV_GATEWAY_PORT,
    LocalConfig,
    forget_ports,
    int_env,
    remember_ports,
    remembered_ports,
)
from jobplane_local.infra import endpoints
from jobplane_local.processes import port_open
from jobplane_local.service import Log, Port, Service, ServiceStatus

PLATFORM_ADMIN = "admin@jobplane.local"
DEMO_APP = "demo"
DEMO_USER = "alice"
DEMO_USER_EMAIL = "alice@example.com"
LOCAL_DELAYS = [5, 10, 20, 40, 80]
SERVICES = ("gateway", "dispatcher", "retry", "notifier", "demo")
# Prometheus /metrics of the consumers, each on a port of its own (METRICS_PORT); the gateway
# serves its own on its API port. Moved with JOBPLANE_<SERVICE>_METRICS_PORT.
METRICS_PORTS = {"dispatcher": 9101, "retry": 9102, "notifier": 9103}


def metrics_port_env(service: str) -> str:
    return f"JOBPLANE_{service.upper()}_METRICS_PORT"


class GatewayError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _script(name: str) -> str:
    # The console scripts live beside the interpreter running us (the workspace's venv).
    return str(Path(sys.executable).parent / name)


# The services nobody waits for on the spot: they run at `LocalConfig.background_nice`. The
# gateway answers apps, and the retry service keeps the retries' time (it costs next to
# nothing), so both keep the normal priority.
BACKGROUND_SERVICES = frozenset({"dispatcher", "notifier"})


class PlatformProcess(Service):
    """One Jobplane service (or the demo app) as a detached process."""

    stop_timeout = 20.0

    def __init__(
        self,
        config: LocalConfig,
        name: str,
        env: dict[str, str],
        port: int | None = None,
        defaults: dict[str, str] | None = None,
        metrics_port: int | None = None,
        *,
        background: bool = False,
    ) -> None:
        super().__init__(config)
        self.name = name
        self.runs_in_background = background
        # ``env`` wins over the caller's environment; ``defaults`` yield to it.
        self.env = env
        self.defaults = defaults or {}
        self.port = port
        self.metrics_port = metrics_port

    @property
    def marker(self) -> str:
        return f"jobplane-{self.name}"

    @property
    def background(self) -> bool:
        return self.runs_in_background

    @property
    def ports(self) -> list[Port]:
        ports = []
        if self.port is not None:
            ports.append(Port(self.port, f"the {self.name}", f"JOBPLANE_{self.name.upper()}_PORT"))
        if self.metrics_port is not None:
            ports.append(
                Port(self.metrics_port, f"the {self.name}'s metrics", metrics_port_env(self.name))
            )
        return ports

    @property
    def address(self) -> str:
        """Where it serves its API; "" for a consumer (its metrics are in the summary)."""
        return f"{self.config.host}:{self.port}" if self.port else ""

    def command(self) -> list[str]:
        return [_script(self.marker)]

    def environment(self) -> dict[str, str]:
        """Read at every start: a restart takes the caller's environment of that moment."""
        return {**self.defaults, **os.environ, **self.env}

    def prepare(self) -> None:
        # A fresh log per start, so that readiness is read from this run's lines only.
        if self.log_file.exists():
            self.log_file.replace(self.log_file.with_suffix(".log.1"))

    def ready(self) -> bool:
        if self.port is not None:
            return port_open(self.config.host, self.port)
        # Consumers have no port: they log "consuming" once connected and in their group.
        return self.log_file.exists() and '"msg":"consuming"' in self.log_file.read_text()


def _local_secret(config: LocalConfig, name: str) -> str:
    """A random secret made on first use and kept in `.local/platform/` (owner-only)."""
    key_file = config.local_dir / "platform" / name
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_text(secrets.token_urlsafe(24))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


@dataclass(frozen=True)
class Platform:
    config: LocalConfig
    admin_key: str
    # Signs the links to results pages (the gateway checks what the notifier mails).
    results_link_secret: str
    # The consumers' metrics ports, by service (none: no metrics server).
    metrics_ports: dict[str, int]

    @classmethod
    def load(cls, config: LocalConfig | None = None) -> Platform:
        config = config or LocalConfig.from_env()
        remembered = remembered_ports(config.local_dir)
        metrics_ports = {
            name: int_env(metrics_port_env(name), remembered.get(metrics_port_env(name), port))
            for name, port in METRICS_PORTS.items()
        }
        return cls(
            config,
            _local_secret(config, "admin.key"),
            _local_secret(config, "results-link.key"),
            metrics_ports,
        )

    @property
    def gateway_url(self) -> str:
        return f"http://{self.config.host}:{self.config.gateway_port}"

    @property
    def demo_url(self) -> str:
        return f"http://{self.config.host}:{self.config.demo_port}"

    @property
    def admin_emails(self) -> str:
        """Who gets the administrators' alerts: ADMIN_EMAILS from the environment, or ours."""
        return os.environ.get("ADMIN_EMAILS") or PLATFORM_ADMIN

    def defaults(self) -> dict[str, str]:
        """The local platform's settings that the caller's environment may override."""
        return {
            "MONGODB_DATABASE": "jobplane",
            "LOG_LEVEL": "INFO",
            # Short tiers so that a retry can be watched live; production keeps the defaults
            # (30 s, 2 min, 10 min, 30 min, 1 h).
            "RETRY_DELAYS_SECONDS": json.dumps(LOCAL_DELAYS),
            "ADMIN_EMAILS": json.dumps([PLATFORM_ADMIN]),
        }

    def retry_delays(self) -> str:
        return os.environ.get("RETRY_DELAYS_SECONDS") or ", ".join(f"{d} s" for d in LOCAL_DELAYS)

    def overridden(self) -> dict[str, str]:
        """The defaults the caller's environment replaces, with the caller's values."""
        return {k: os.environ[k] for k in self.defaults() if k in os.environ}

    def processes(self) -> list[PlatformProcess]:
        wiring = {
            **endpoints(self.config).service_env(),
            "METRICS_HOST": self.config.host,
        }
        defaults = self.defaults()

        def service(name: str, own: dict[str, str], port: int | None = None) -> PlatformProcess:
            metrics_port = self.metrics_ports.get(name)
            return PlatformProcess(
                self.config,
                name,
                {**wiring, **own},
                port,
                defaults,
                metrics_port,
                background=name in BACKGROUND_SERVICES,
            )

        def metrics(name: str) -> dict[str, str]:
            port = self.metrics_ports.get(name)
            return {"METRICS_PORT": str(port)} if port else {}

        return [
            service(
                "gateway",
                {
                    "ADMIN_API_KEY": self.admin_key,
                    "HOST": self.config.host,
                    "PORT": str(self.config.gateway_port),
                    "PUBLIC_URL": self.gateway_url,
                    "RESULTS_LINK_SECRET": self.results_link_secret,
                },
                self.config.gateway_port,
            ),
            service(
                "dispatcher", {"GATEWAY_PUBLIC_URL": self.gateway_url, **metrics("dispatcher")}
            ),
            service("retry", metrics("retry")),
            service(
                "notifier",
                {
                    "RESULTS_PAGE_URL": self.gateway_url,
                    "RESULTS_LINK_SECRET": self.results_link_secret,
                    **metrics("notifier"),
                },
            ),
            PlatformProcess(
                self.config,
                "demo",
                {
                    "DEMO_HOST": self.config.host,
                    "DEMO_PORT": str(self.config.demo_port),
                    "DEMO_GATEWAY_URL": self.gateway_url,
                    "DEMO_OUTPUT_DIR": str(self.config.local_dir / "demo" / "thumbnails"),
                },
                self.config.demo_port,
            ),
        ]

    def process(self, name: str) -> PlatformProcess:
        for process in self.processes():
            if process.name == name:
                return process
        raise ValueError(f"unknown service {name!r}; choose from {', '.join(SERVICES)}")

    def ports(self) -> dict[str, int]:
        """The ports this platform uses, by the variable that moves each."""
        return {
            ENV_GATEWAY_PORT: self.config.gateway_port,
            ENV_DEMO_PORT: self.config.demo_port,
            **{metrics_port_env(n): p for n, p in self.metrics_ports.items() if p},
        }

    def up(self, log: Log) -> str:
        """Start what is not running, register the demo app and its user; return its API key.
        The ports are remembered in `.local/` for every later command."""
        remember_ports(self.config.local_dir, self.ports())
        for process in self.processes():
            process.start(log)
        return self._register_demo()

    def down(self, log: Log) -> None:
        for process in reversed(self.processes()):
            process.stop(log)
        forget_ports(self.config.local_dir, self.ports())

    def restart(self, name: str, log: Log) -> None:
        """Stop one service and start it again with the caller's environment of now."""
        process = self.process(name)
        process.stop(log)
        process.start(log)

    def status(self) -> list[ServiceStatus]:
        return [process.status() for process in self.processes()]

    def metrics_urls(self) -> dict[str, str]:
        """Every service's metrics endpoint that answers (none before they serve metrics)."""
        candidates = {"gateway": f"{self.gateway_url}/metrics"} | {
            n: f"http://{self.config.host}:{p}/metrics" for n, p in self.metrics_ports.items() if p
        }
        return {name: url for name, url in candidates.items() if _answers(url)}

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


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own http://
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def platform_guide(platform: Platform, api_key: str, mail_dir: Path) -> str:
    """What `make up` prints: where everything is and a job to try."""
    gw = platform.gateway_url
    key_file = platform.config.local_dir / "platform" / "admin.key"
    metrics = "".join(
        f"\n  metrics      {name:<11}{url}" for name, url in platform.metrics_urls().items()
    )
    from_env = "".join(
        f"\n  from your environment: {name}={value}"
        for name, value in platform.overridden().items()
    )
    return f"""
Jobplane is up.
  gateway      {gw}
  API docs     {gw}/docs   (ReDoc: {gw}/redoc)
  dashboard    {gw}/dashboard   (log in with the admin key)
  demo backend {platform.demo_url}   (makes thumbnails; registered as app "{DEMO_APP}"){metrics}
  admin alerts to {platform.admin_emails}   (ADMIN_EMAILS)
  e-mails      {mail_dir}/   (one .eml per message, envelope in the .json beside it)
  logs         {platform.config.local_dir}/<service>/<service>.log
  admin key    {key_file}{from_env}

Submit a thumbnail job for the demo user "{DEMO_USER}" <{DEMO_USER_EMAIL}>:

  curl -s -X POST {gw}/v1/jobs \\
    -H 'Authorization: Bearer {api_key}' -H 'Content-Type: application/json' \\
    -d '{{"user_id": "{DEMO_USER}", "job_type": "thumbnail",
         "payload": {{"width": 800, "height": 600, "color": "teal", "size": [160, 120]}}}}'

Then follow it with:  curl -s {gw}/v1/jobs/<job_id> -H 'Authorization: Bearer {api_key}'
Add "fail_times": 2 to the payload to watch two retries (due after the retry delays:
{platform.retry_delays()}), "permanent_failure": true for a dead job and the administrators' alert.
Operate it from the command line (then: uv run jobplane --help):
  export JOBPLANE_URL={gw} JOBPLANE_ADMIN_KEY=$(cat {key_file})
Restart one service with the settings of your shell: jobplane-local platform restart SERVICE
Stop everything with: make down
"""
