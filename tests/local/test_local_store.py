"""The local store: built once per machine from the pinned crate, run as a one-node replica set."""

from __future__ import annotations

import socket
import stat
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from jobplane_local import LocalConfig, LocalInfraError, MissingToolError, cli
from jobplane_local.processes import pid_alive
from jobplane_local.store import (
    STORE_VERSION,
    Store,
    build_command,
    install_store,
    installed_version,
    replica_set_primary,
    store_binary,
)
from jobplane_local.testing import infra_from_env
from pymongo import MongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

# Ports 27100-27199 are this test module's: the shared store keeps 27017.
STORE_TEST_PORTS = range(27100, 27200)


def _free_store_port() -> int:
    for port in STORE_TEST_PORTS:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {STORE_TEST_PORTS}")


def _quiet(_: str) -> None:
    pass


def _fake_binary(path: Path, version_line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho '{version_line}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def store_config(tmp_path: Path) -> Iterator[LocalConfig]:
    """A store of its own (data under tmp_path) on a port of 27100-27199; the binary is the
    machine's cached one, built by `jobplane-local install store` if it is not there yet."""
    config = LocalConfig(local_dir=tmp_path, store_port=_free_store_port(), start_timeout=60)
    yield config
    Store(config).stop(_quiet)


def test_start_reuse_status_stop(store_config: LocalConfig) -> None:
    store = Store(store_config)
    pid = store.start(_quiet)
    assert Store(store_config).start(_quiet) == pid  # idempotent: the running one is reused
    status = store.status()
    assert (status.name, status.running, status.pid) == ("store", True, pid)
    assert status.address == f"127.0.0.1:{store_config.store_port}"
    assert status.data_dir == store_config.local_dir / "store" / "data"
    assert status.log_file == store_config.local_dir / "store" / "store.log"
    assert (status.data_dir / "WiredTiger").exists()

    client: MongoClient[dict[str, Any]] = MongoClient(store_config.mongodb_uri)
    try:
        hello = client.admin.command("hello")
        # A one-node replica set: what transactions and change streams need.
        assert hello["isWritablePrimary"] is True
        assert hello["setName"]
        assert hello["me"] == f"127.0.0.1:{store_config.store_port}"
        client["t"]["docs"].insert_one({"_id": 1, "kept": True})
    finally:
        client.close()

    store.stop(_quiet)
    assert not store.status().running
    assert not pid_alive(pid)

    # Data survives a restart.
    store.start(_quiet)
    client = MongoClient(store_config.mongodb_uri)
    try:
        assert client["t"]["docs"].find_one({"_id": 1}) == {"_id": 1, "kept": True}
    finally:
        client.close()


def test_acknowledged_writes_survive_a_killed_server(store_config: LocalConfig) -> None:
    store = Store(store_config)
    store.start(_quiet)
    client: MongoClient[dict[str, Any]] = MongoClient(store_config.mongodb_uri)
    try:
        for i in range(0, 1000, 100):
            client["t"]["jobs"].insert_many([{"_id": n} for n in range(i, i + 100)])
        client["t"]["jobs"].update_one({"_id": 7}, {"$set": {"status": "succeeded"}})
    finally:
        client.close()
    # No shutdown, no checkpoint. `kill` returns once the port is free again (seen in CI: a
    # restart at once found it still bound by the dying server's threads).
    assert store.kill(_quiet) is not None

    store.start(_quiet)
    client = MongoClient(store_config.mongodb_uri)
    try:
        assert client["t"]["jobs"].count_documents({}) == 1000
        assert client["t"]["jobs"].find_one({"_id": 7}) == {"_id": 7, "status": "succeeded"}
    finally:
        client.close()


def test_command_line(store_config: LocalConfig) -> None:
    argv = Store(store_config).command()
    assert argv[0] == str(store_binary(store_config.cache_dir))
    with_values = [arg for arg in argv[1:] if arg != "--sync-on-commit"]
    flags = dict(zip(with_values[::2], with_values[1::2], strict=True))
    assert flags["--port"] == str(store_config.store_port)
    assert flags["--storage-path"] == str(store_config.local_dir / "store" / "data")
    assert flags["--cache-size"] == "512M"
    assert flags["--config"] == str(store_config.local_dir / "store" / "secantusd.toml")
    assert "--standalone" not in argv  # the replica set is what transactions need
    assert "--sync-on-commit" in argv  # acknowledged writes survive a killed server
    faster = Store(replace(store_config, store_sync_on_commit=False)).command()
    assert "--sync-on-commit" not in faster


def test_build_command_is_pinned(tmp_path: Path) -> None:
    assert build_command(tmp_path) == [
        "cargo", "install", "--locked", "--ignore-rust-version",
        "--version", STORE_VERSION, "--root", str(tmp_path), "secantus-mdb",
    ]  # fmt: skip


def test_the_cached_binary_is_reused_when_its_version_matches(tmp_path: Path) -> None:
    binary = store_binary(tmp_path)
    _fake_binary(binary, f"secantusd-rs {STORE_VERSION}")
    # No build tool is looked at: nothing is built.
    assert install_store(tmp_path, _quiet) == binary
    assert installed_version(binary) == STORE_VERSION


def test_another_version_is_rebuilt_and_missing_tools_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_binary(store_binary(tmp_path), "secantusd-rs 0.5.2")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(MissingToolError) as caught:
        install_store(tmp_path, _quiet)
    message = str(caught.value)
    assert f"secantusd-rs {STORE_VERSION}" in message
    for tool in ("cargo:", "cmake:", "cc:"):
        assert tool in message


def test_a_missing_binary_reads_as_not_installed(tmp_path: Path) -> None:
    assert installed_version(tmp_path / "absent") is None
    _fake_binary(tmp_path / "other", "something-else 1.0")
    assert installed_version(tmp_path / "other") is None


def test_cache_dir_follows_xdg_cache_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert LocalConfig.from_env().cache_dir == tmp_path / "jobplane"
    monkeypatch.setenv("JOBPLANE_STORE_PORT", "27123")
    assert LocalConfig.from_env().mongodb_uri == "mongodb://127.0.0.1:27123/"
    assert LocalConfig.from_env().store_sync_on_commit
    monkeypatch.setenv("JOBPLANE_STORE_SYNC_ON_COMMIT", "off")
    assert not LocalConfig.from_env().store_sync_on_commit
    monkeypatch.setenv("JOBPLANE_STORE_SYNC_ON_COMMIT", "maybe")
    with pytest.raises(ValueError, match="JOBPLANE_STORE_SYNC_ON_COMMIT"):
        LocalConfig.from_env()
    monkeypatch.delenv("JOBPLANE_STORE_SYNC_ON_COMMIT")
    assert not replica_set_primary("mongodb://127.0.0.1:1/")
    assert cli.main(["install", "ferretdb"]) == 1
    assert "unknown service" in capsys.readouterr().err


async def test_unique_index_rejects_duplicates(mongo_db: AsyncDatabase[dict[str, Any]]) -> None:
    jobs = mongo_db["jobs"]
    await jobs.create_index("idempotency_key", unique=True)
    await jobs.insert_one({"idempotency_key": "k1", "status": "queued"})
    with pytest.raises(DuplicateKeyError):
        await jobs.insert_one({"idempotency_key": "k1", "status": "queued"})

    assert await jobs.count_documents({}) == 1
    found = await jobs.find_one({"idempotency_key": "k1"})
    assert found is not None
    assert found["status"] == "queued"


def _fake_tools(bin_dir: Path, cargo_script: str) -> None:
    """A PATH holding a scripted `cargo` and stand-ins for cmake and cc."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, text in (("cargo", cargo_script), ("cmake", "exit 0\n"), ("cc", "exit 0\n")):
        tool = bin_dir / name
        tool.write_text("#!/bin/sh\n" + text)
        tool.chmod(0o755)


def test_the_build_installs_the_pinned_version_into_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real build takes minutes: a scripted cargo records how it is called and installs
    # a binary that answers --version like the real one.
    calls = tmp_path / "cargo-calls"
    script = f"""
echo "$@ CARGO_TARGET_DIR=$CARGO_TARGET_DIR" >> {calls}
prev=""; for arg in "$@"; do [ "$prev" = --root ] && root="$arg"; prev="$arg"; done
mkdir -p "$root/bin"
printf '#!/bin/sh\\necho "secantusd-rs {STORE_VERSION}"\\n' > "$root/bin/secantusd-rs"
chmod +x "$root/bin/secantusd-rs"
echo "   Compiling secantus-mdb"
"""
    _fake_tools(tmp_path / "bin", script)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    cache = tmp_path / "cache"
    lines: list[str] = []

    assert install_store(cache, lines.append) == store_binary(cache)
    assert installed_version(store_binary(cache)) == STORE_VERSION
    assert any(
        f"building the local store (secantusd-rs {STORE_VERSION}), first time only" in line
        for line in lines
    )
    call = calls.read_text().splitlines()
    assert len(call) == 1
    assert call[0].startswith(
        f"install --locked --ignore-rust-version --version {STORE_VERSION} --root "
    )
    assert f"secantus-mdb CARGO_TARGET_DIR={cache}/build/" in call[0]
    # Built into a staging root, then moved: nothing half-built is left behind.
    assert sorted(p.name for p in cache.iterdir()) == [
        f"secantusd-rs-{STORE_VERSION}",
        f"secantusd-rs-{STORE_VERSION}.build.log",
        f"secantusd-rs-{STORE_VERSION}.lock",
    ]
    assert (
        "Compiling secantus-mdb" in (cache / f"secantusd-rs-{STORE_VERSION}.build.log").read_text()
    )

    # Built once: a second install (another clone, say) reuses it without calling cargo.
    assert install_store(cache, lines.append) == store_binary(cache)
    assert len(calls.read_text().splitlines()) == 1


def test_a_failed_build_says_why_and_installs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_tools(tmp_path / "bin", 'echo "error: failed to run custom build command"\nexit 101\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    cache = tmp_path / "cache"
    with pytest.raises(LocalInfraError, match=r"(?s)cargo exit 101.*failed to run custom build"):
        install_store(cache, _quiet)
    assert installed_version(store_binary(cache)) is None


def test_the_tests_ask_for_the_store_to_be_built_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("MONGODB_URI", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))  # whatever happens, no build
    with pytest.raises(LocalInfraError, match="jobplane-local install store"):
        infra_from_env()
