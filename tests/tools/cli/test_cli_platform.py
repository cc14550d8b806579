"""The `jobplane` CLI against the platform running as processes: it redrives a dead job (the
real console script, as an operator runs it) and the job then succeeds; the other commands
through typer's CliRunner."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from jobplane_cli.main import app as cli
from jobplane_local.testing import Infra
from typer.testing import CliRunner, Result

from tests.process_platform import ADMIN_KEY, App, ProcessPlatform, running_platform, wait_for

JOBPLANE = str(Path(sys.executable).parent / "jobplane")


@pytest.fixture(scope="module")
def platform(infra: Infra) -> Iterator[ProcessPlatform]:
    with running_platform(infra, "cli") as running:
        yield running


@pytest.fixture(scope="module")
def app(platform: ProcessPlatform) -> App:
    return platform.register_app()


@pytest.fixture(scope="module")
def dead_job(platform: ProcessPlatform, app: App) -> str:
    return platform.dead_job(app)


def _env(platform: ProcessPlatform, **extra: str) -> dict[str, str]:
    return {
        "JOBPLANE_URL": platform.gateway_url,
        "JOBPLANE_ADMIN_KEY": ADMIN_KEY,
        "JOBPLANE_API_KEY": "",
        "KAFKA_BOOTSTRAP_SERVERS": platform.infra.kafka_bootstrap,
        "TOPIC_PREFIX": platform.topic_prefix,
        "COLUMNS": "200",
        **extra,
    }


def _run(platform: ProcessPlatform, *args: str, **env: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=_env(platform, **env))


def test_the_cli_lists_apps_users_and_dead_jobs(
    platform: ProcessPlatform, app: App, dead_job: str
) -> None:
    apps = _run(platform, "apps")
    assert apps.exit_code == 0, apps.output
    assert app.app_id in apps.output
    users = _run(platform, "users", app.app_id, "--json")
    assert [u["user_id"] for u in json.loads(users.output)] == ["alice"]
    dead = _run(platform, "dead", "list", "--app", app.app_id, "--json")
    assert dead_job in [j["job_id"] for j in json.loads(dead.output)]
    shown = _run(platform, "jobs", "show", dead_job)
    assert shown.exit_code == 0, shown.output
    assert "dead" in shown.output
    assert "unreachable" in shown.output
    # With only the app's key, the app's own jobs.
    own = _run(
        platform, "jobs", "list", "--json", JOBPLANE_ADMIN_KEY="", JOBPLANE_API_KEY=app.api_key
    )
    assert own.exit_code == 0, own.output
    assert {j["app_id"] for j in json.loads(own.output)} == {app.app_id}


def test_a_dry_run_lists_the_dead_job_and_changes_nothing(
    platform: ProcessPlatform, app: App, dead_job: str
) -> None:
    as_app = _run(
        platform, "dead", "redrive", "--failure-kind", "unreachable", "--dry-run",
        JOBPLANE_ADMIN_KEY="", JOBPLANE_API_KEY=app.api_key,
    )  # fmt: skip
    assert as_app.exit_code == 0, as_app.output
    assert dead_job in as_app.output
    assert "would redrive" in as_app.output
    assert platform.job(dead_job)["status"] == "dead"


def test_the_cli_redrives_a_dead_job_and_it_succeeds(
    platform: ProcessPlatform, app: App, dead_job: str
) -> None:
    platform.demo.start(print)  # the backend is back
    env = {**os.environ, **_env(platform)}
    done = subprocess.run(  # noqa: S603 - our own console script
        [JOBPLANE, "dead", "redrive", dead_job, "--rate", "5", "--yes"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "redriven 1, skipped 0" in done.stdout
    job = platform.wait_for_status(dead_job, "succeeded")
    assert [r["by"] for r in job["redrives"]] == ["admin"]
    # Twice runs it once: the job is no longer dead, nothing is left to redrive.
    again = _run(platform, "dead", "redrive", dead_job, "--yes")
    assert again.exit_code == 0, again.output
    assert "not dead (succeeded)" in again.output


def test_tail_prints_the_decoded_dead_letter(platform: ProcessPlatform, dead_job: str) -> None:
    tailed = _run(
        platform, "tail", "job.dead", "--from-beginning", "--count", "1", "--seconds", "30"
    )
    assert tailed.exit_code == 0, tailed.output
    event = json.loads(tailed.output.splitlines()[0])
    assert event["type"] == "JobDead"
    assert event["key"] == dead_job
    assert event["event"]["failure"]["kind"] == "unreachable"


@pytest.fixture
def silent_backend() -> Iterator[int]:
    """A port that accepts connections and never answers: a dispatched attempt stays open."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


def test_cancel_stops_an_unfinished_job_and_refuses_a_finished_one(
    platform: ProcessPlatform, silent_backend: int
) -> None:
    app = platform.register_app()
    changed = platform.http.patch(
        f"/v1/admin/apps/{app.app_id}",
        json={"backend_url": f"http://127.0.0.1:{silent_backend}/jobs"},
        headers=platform.admin_headers,
    )
    assert changed.status_code == 200, changed.text
    job_id = platform.submit(app)
    wait_for(
        lambda: platform.job(job_id)["status"] == "dispatched",
        30,
        lambda: f"never dispatched: {platform.job(job_id)}",
    )
    cancelled = _run(platform, "jobs", "cancel", job_id)
    assert cancelled.exit_code == 0, cancelled.output
    assert "cancelled" in cancelled.output
    assert platform.job(job_id)["status"] == "cancelled"
    refused = _run(platform, "jobs", "cancel", job_id)
    assert refused.exit_code == 1
    assert "409" in refused.output
    assert "cancelled already" in refused.output
