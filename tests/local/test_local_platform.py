"""`make up` that respects the user: the caller's settings reach the services, one service
restarts with the environment of now, the ports in use are remembered in `.local/`, and the
summary names every URL and the administrators' address."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from jobplane.topics import delete_topics
from jobplane_local import LocalConfig
from jobplane_local.config import forget_ports, remember_ports, remembered_ports
from jobplane_local.platform import LOCAL_DELAYS, PLATFORM_ADMIN, Platform, platform_guide
from jobplane_local.testing import Infra
from pymongo import MongoClient

from tests.support import free_port

JOBPLANE_LOCAL = str(Path(sys.executable).parent / "jobplane-local")


@pytest.fixture
def local_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `.local/` of the test's own, and none of the port variables set."""
    monkeypatch.setenv("JOBPLANE_LOCAL_DIR", str(tmp_path))
    for name in list(os.environ):
        if name.startswith("JOBPLANE_") and name.endswith("_PORT"):
            monkeypatch.delenv(name)
    for name in ("RETRY_DELAYS_SECONDS", "ADMIN_EMAILS", "LOG_LEVEL", "MONGODB_DATABASE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def _platform(local_dir: Path) -> Platform:
    return Platform(LocalConfig(local_dir=local_dir), "admin-key", "results-secret", {})


def test_the_callers_settings_win_over_the_local_defaults(
    local_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform = _platform(local_dir)
    retry = platform.process("retry").environment()
    assert json.loads(retry["RETRY_DELAYS_SECONDS"]) == LOCAL_DELAYS
    assert platform.overridden() == {}

    monkeypatch.setenv("RETRY_DELAYS_SECONDS", "1,2")
    monkeypatch.setenv("ADMIN_EMAILS", "oncall@example.com")
    monkeypatch.setenv("JITTER", "0")  # a setting the platform has no default for
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "elsewhere:9092")
    retry = platform.process("retry").environment()
    assert retry["RETRY_DELAYS_SECONDS"] == "1,2"
    assert retry["JITTER"] == "0"
    # The wiring stays the local servers' (moved with JOBPLANE_KAFKA_PORT, not this).
    assert retry["KAFKA_BOOTSTRAP_SERVERS"] == platform.config.kafka_bootstrap
    assert platform.process("notifier").environment()["ADMIN_EMAILS"] == "oncall@example.com"
    assert platform.overridden() == {
        "RETRY_DELAYS_SECONDS": "1,2",
        "ADMIN_EMAILS": "oncall@example.com",
    }
    assert platform.admin_emails == "oncall@example.com"


def test_every_service_is_wired_to_the_local_servers_and_only_to_them(
    local_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SMTP_SINK_DIR", raising=False)  # the caller's environment reaches them
    platform = _platform(local_dir)
    config = platform.config
    for name in ("gateway", "dispatcher", "retry", "notifier"):
        env = platform.process(name).environment()
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == config.kafka_bootstrap
        assert env["MONGODB_URI"] == config.mongodb_uri
        assert env["SMTP_PORT"] == str(config.smtp_port)
        # Where the sink files mails is for the tests that read them, not for a service.
        assert "SMTP_SINK_DIR" not in env


def test_the_mails_link_to_results_pages_the_gateway_can_check(local_dir: Path) -> None:
    platform = Platform.load(LocalConfig.from_env())
    gateway = platform.process("gateway").environment()
    notifier = platform.process("notifier").environment()
    assert notifier["RESULTS_PAGE_URL"] == platform.gateway_url
    assert notifier["RESULTS_LINK_SECRET"] == gateway["RESULTS_LINK_SECRET"]
    assert len(gateway["RESULTS_LINK_SECRET"]) >= 32
    # Made once and kept: a restart keeps the links already mailed valid.
    assert (
        Platform.load(LocalConfig.from_env()).results_link_secret
        == (gateway["RESULTS_LINK_SECRET"])
    )
    assert platform.process("demo").environment()["DEMO_GATEWAY_URL"] == platform.gateway_url


def test_ports_are_remembered_until_forgotten_and_the_environment_wins(
    local_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert LocalConfig.from_env().gateway_port == 8000
    remember_ports(local_dir, {"JOBPLANE_GATEWAY_PORT": 8512, "JOBPLANE_STORE_PORT": 27512})
    remember_ports(local_dir, {"JOBPLANE_DEMO_PORT": 8513})
    config = LocalConfig.from_env()  # "another shell": no variables, the remembered ports
    assert (config.gateway_port, config.demo_port, config.store_port) == (8512, 8513, 27512)
    monkeypatch.setenv("JOBPLANE_GATEWAY_PORT", "8514")
    assert LocalConfig.from_env().gateway_port == 8514
    forget_ports(local_dir, ["JOBPLANE_GATEWAY_PORT", "JOBPLANE_DEMO_PORT"])
    assert remembered_ports(local_dir) == {"JOBPLANE_STORE_PORT": 27512}
    forget_ports(local_dir, ["JOBPLANE_STORE_PORT"])
    assert not (local_dir / "ports.json").exists()


def test_the_summary_names_every_url_and_the_admin_address(local_dir: Path) -> None:
    platform = _platform(local_dir)
    guide = platform_guide(platform, "demo.key", local_dir / "mail")
    gw = "http://127.0.0.1:8000"
    for expected in (
        f"gateway      {gw}",
        f"{gw}/docs",
        f"{gw}/redoc",
        f"{gw}/dashboard",
        "http://127.0.0.1:8001",
        f"admin alerts to {PLATFORM_ADMIN}",
        "jobplane-local platform restart SERVICE",
    ):
        assert expected in guide, expected
    assert " on -" not in guide


@pytest.fixture
def platform_on_test_servers(
    local_dir: Path, infra: Infra, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Platform]:
    """A platform whose wiring is the test servers; its own database and topics (given as
    the caller's settings, which is what the tests here check)."""
    prefix = f"local{uuid.uuid4().hex[:6]}."
    database = prefix.rstrip(".") + "_db"
    monkeypatch.setenv("TOPIC_PREFIX", prefix)
    monkeypatch.setenv("MONGODB_DATABASE", database)
    kafka_port = int(infra.kafka_bootstrap.rsplit(":", 1)[1])
    store_port = int(infra.mongodb_uri.rstrip("/").rsplit(":", 1)[1])
    config = LocalConfig(
        local_dir=local_dir,
        kafka_port=kafka_port,
        store_port=store_port,
        smtp_port=infra.smtp_port,
        gateway_port=free_port(),
        demo_port=free_port(),
    )
    platform = Platform(config, "admin-key", "results-secret", {})
    yield platform
    for name in ("gateway", "retry"):
        platform.process(name).stop(print)
    asyncio.run(delete_topics(infra.kafka_bootstrap, prefix))
    client: MongoClient[dict[str, Any]] = MongoClient(infra.mongodb_uri)
    try:
        client.drop_database(database)
    finally:
        client.close()


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    pairs = [item.decode().split("=", 1) for item in raw if b"=" in item]
    return dict((k, v) for k, v in pairs)


def test_a_restart_takes_the_environment_of_now_and_says_no_on_dash(
    platform_on_test_servers: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRY_DELAYS_SECONDS", "1,2")
    said: list[str] = []
    retry = platform_on_test_servers.process("retry")
    first = retry.start(said.append)
    assert _environ(first)["RETRY_DELAYS_SECONDS"] == "1,2"

    monkeypatch.setenv("RETRY_DELAYS_SECONDS", "3,4")
    platform_on_test_servers.restart("retry", said.append)
    second = retry.pid()
    assert second is not None
    assert second != first
    assert _environ(second)["RETRY_DELAYS_SECONDS"] == "3,4"
    assert said and not any(" on -" in line or " on  " in line for line in said), said


def test_status_in_another_shell_finds_a_gateway_on_a_moved_port(
    platform_on_test_servers: Platform, local_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform = platform_on_test_servers
    remember_ports(local_dir, platform.ports())
    platform.process("gateway").start(print)
    # Another shell: JOBPLANE_LOCAL_DIR only (where `.local/` is), no port variables.
    env = {k: v for k, v in os.environ.items() if not k.endswith("_PORT")}
    shown = subprocess.run(  # noqa: S603 - our own console script
        [JOBPLANE_LOCAL, "platform", "status"],
        env={**env, "JOBPLANE_LOCAL_DIR": str(local_dir)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    gateway_line = next(line for line in shown.splitlines() if line.startswith("gateway"))
    assert "running" in gateway_line
    assert f"127.0.0.1:{platform.config.gateway_port}" in gateway_line
    assert f"http://127.0.0.1:{platform.config.gateway_port}/dashboard" in shown


def test_the_consumers_serve_metrics_on_ports_of_their_own(
    local_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBPLANE_RETRY_METRICS_PORT", "8519")
    platform = Platform.load(LocalConfig.from_env())
    assert platform.metrics_ports == {"dispatcher": 9101, "retry": 8519, "notifier": 9103}
    retry = platform.process("retry")
    assert retry.environment()["METRICS_PORT"] == "8519"
    assert retry.environment()["METRICS_HOST"] == "127.0.0.1"
    assert [p.env_var for p in retry.ports] == ["JOBPLANE_RETRY_METRICS_PORT"]
    assert "METRICS_PORT" not in platform.process("gateway").env
    assert platform.ports()["JOBPLANE_RETRY_METRICS_PORT"] == 8519


class _Metrics(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/metrics" else 404)
        self.end_headers()
        self.wfile.write(b"jobplane_up 1\n")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_the_summary_names_the_metrics_that_are_served(local_dir: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        serving = server.server_address[1]
        silent = free_port()
        platform = Platform(
            LocalConfig(local_dir=local_dir), "k", "r", {"retry": serving, "notifier": silent}
        )
        guide = platform_guide(platform, "demo.key", local_dir / "mail")
    finally:
        server.shutdown()
        server.server_close()
    assert f"metrics      retry      http://127.0.0.1:{serving}/metrics" in guide
    assert f":{silent}/metrics" not in guide  # nothing serves it: not claimed
