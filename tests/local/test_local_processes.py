"""Process plumbing of jobplane-local: port checks, tools, pid files, a full start/stop cycle."""

from __future__ import annotations

import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from jobplane_local import LocalConfig, MissingToolError, PortInUseError, cli
from jobplane_local.kafka import Kafka, new_cluster_id
from jobplane_local.platform import Platform
from jobplane_local.processes import (
    ensure_port_free,
    pid_alive,
    read_pid,
    require_tool,
    start_detached,
    stop_process,
)
from jobplane_local.smtp import SmtpSink, smtp_answers

from tests.support import free_port


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A port on 127.0.0.1 held by a listening socket that is not ours."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_taken_port_is_reported_with_the_env_var(listening_port: int) -> None:
    with pytest.raises(PortInUseError) as caught:
        ensure_port_free("127.0.0.1", listening_port, what="the store", env_var="JOBPLANE_X_PORT")
    message = str(caught.value)
    assert f"port {listening_port}" in message
    assert "JOBPLANE_X_PORT=" in message


def test_free_port_passes() -> None:
    ensure_port_free("127.0.0.1", free_port(), what="x", env_var="X")


def test_service_refuses_a_port_taken_by_someone_else(tmp_path: Path, listening_port: int) -> None:
    config = LocalConfig(local_dir=tmp_path, smtp_port=listening_port)
    with pytest.raises(PortInUseError, match="JOBPLANE_SMTP_PORT"):
        SmtpSink(config).start(log=lambda _: None)
    assert not SmtpSink(config).pid_file.exists()


def test_missing_tool_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingToolError, match=r"java not found: install a Java 17\+ JRE"):
        Kafka(LocalConfig(local_dir=tmp_path)).install(log=lambda _: None)
    with pytest.raises(MissingToolError, match="no-such-tool not found: get it"):
        require_tool("no-such-tool", "get it")


def test_pid_files_and_liveness(tmp_path: Path) -> None:
    assert read_pid(tmp_path / "absent.pid") is None
    (tmp_path / "bad.pid").write_text("not a pid")
    assert read_pid(tmp_path / "bad.pid") is None
    assert pid_alive(os.getpid())
    assert not pid_alive(os.getpid(), marker="certainly-not-in-pytest's-command-line")

    marker = str(tmp_path / "sleeper")
    pid = start_detached(
        [sys.executable, "-c", "import time; time.sleep(60)", marker],
        log_file=tmp_path / "sleeper.log",
        cwd=tmp_path,
    )
    assert pid_alive(pid, marker)
    assert stop_process(pid, marker, timeout=5)
    assert not pid_alive(pid, marker)
    assert not stop_process(pid, marker)


def _nice_of(pid: int) -> int:
    # Field 19 of /proc/<pid>/stat; the command name (field 2) may hold spaces, so count
    # from its closing parenthesis.
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[16])


def _autogroup_nice(pid: int) -> int | None:
    path = Path(f"/proc/{pid}/autogroup")
    return int(path.read_text().split("nice")[1]) if path.exists() else None


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
@pytest.mark.parametrize("nice", [0, 10])
def test_a_process_starts_at_the_priority_asked(tmp_path: Path, nice: int) -> None:
    marker = str(tmp_path / "sleeper")
    pid = start_detached(
        [sys.executable, "-c", "import time; time.sleep(60)", marker],
        log_file=tmp_path / "sleeper.log",
        cwd=tmp_path,
        nice=nice,
    )
    try:
        # Once `nice` has set the priority and run the command (a moment after the start).
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}/exe").resolve() != Path(sys.executable).resolve():
            assert time.monotonic() < deadline, "the command never ran"
            time.sleep(0.01)
        assert pid_alive(pid, marker)
        assert _nice_of(pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + nice)
        if nice and _autogroup_nice(pid) is not None:  # a session of its own, niced as a whole
            assert _autogroup_nice(pid) == nice
            assert Path(f"/proc/{pid}/autogroup").read_text() != (
                Path("/proc/self/autogroup").read_text()
            )
    finally:
        stop_process(pid, marker, timeout=5)


def test_background_work_is_niced_and_what_answers_people_is_not(tmp_path: Path) -> None:
    config = LocalConfig(local_dir=tmp_path, background_nice=7)
    platform = Platform(config, "k" * 32, "s" * 32, metrics_ports={})
    niced = {p.name: p.background for p in platform.processes()}
    assert niced == {
        "gateway": False,
        "dispatcher": True,
        "retry": False,
        "notifier": True,
        "demo": False,
    }
    assert not Kafka(config).background
    assert not SmtpSink(config).background


def test_background_nice_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBPLANE_LOCAL_DIR", str(tmp_path))
    monkeypatch.setenv("JOBPLANE_BACKGROUND_NICE", "0")
    assert LocalConfig.from_env().background_nice == 0
    monkeypatch.setenv("JOBPLANE_BACKGROUND_NICE", "20")
    with pytest.raises(ValueError, match="JOBPLANE_BACKGROUND_NICE=20 is not a nice value"):
        LocalConfig.from_env()
    monkeypatch.delenv("JOBPLANE_BACKGROUND_NICE")
    assert LocalConfig.from_env().background_nice == 10


def test_smtp_sink_start_reuse_status_stop(tmp_path: Path) -> None:
    config = LocalConfig(local_dir=tmp_path, smtp_port=free_port(), start_timeout=30)
    sink = SmtpSink(config)
    pid = sink.start(log=lambda _: None)
    try:
        assert smtp_answers("127.0.0.1", config.smtp_port)
        assert SmtpSink(config).start(log=lambda _: None) == pid  # idempotent: reused
        status = sink.status()
        assert (status.running, status.pid, status.address) == (
            True,
            pid,
            f"127.0.0.1:{config.smtp_port}",
        )
    finally:
        sink.stop(log=lambda _: None)
    assert not sink.status().running
    assert not pid_alive(pid)


def test_kafka_configuration(tmp_path: Path) -> None:
    config = LocalConfig(local_dir=tmp_path, kafka_port=19192, kafka_controller_port=19193)
    props = Kafka(config).server_properties_text()
    assert "listeners=PLAINTEXT://127.0.0.1:19192,CONTROLLER://127.0.0.1:19193" in props
    assert "controller.quorum.voters=1@127.0.0.1:19193" in props
    assert "auto.create.topics.enable=false" in props
    assert f"log.dirs={tmp_path / 'kafka' / 'data'}" in props
    cluster_id = new_cluster_id()
    assert len(cluster_id) == 22
    assert "=" not in cluster_id


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """`kafka-storage format -t -…` fails ("expected one argument"): such a draw is redrawn."""
    dashed = uuid.UUID(bytes=bytes([0xFB]) + bytes(15))  # base64url "-w…"
    draws = iter([dashed, uuid.UUID(int=1)])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(draws))
    assert new_cluster_id() == "AAAAAAAAAAAAAAAAAAAAAQ"


def test_cli_env_prints_client_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in list(os.environ):
        if name.startswith("JOBPLANE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("JOBPLANE_LOCAL_DIR", str(tmp_path))
    monkeypatch.setenv("JOBPLANE_SMTP_PORT", "2525")
    monkeypatch.setenv("JOBPLANE_STORE_PORT", "27018")
    assert cli.main(["env"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092",
        "MONGODB_URI=mongodb://127.0.0.1:27018/",
        "SMTP_HOST=127.0.0.1",
        "SMTP_PORT=2525",
        f"SMTP_SINK_DIR={tmp_path / 'smtp' / 'mail'}",
    ]
