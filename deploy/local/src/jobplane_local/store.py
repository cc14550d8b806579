"""The local job store: SecantusDB's `secantusd-rs`, a MongoDB-compatible server on WiredTiger.

It is built once per machine with `cargo install` from crates.io (crate `secantus-mdb`, pinned
to STORE_VERSION) into `<cache>/secantusd-rs-<version>/`, where <cache> is
`${XDG_CACHE_HOME:-~/.cache}/jobplane`: every clone of Jobplane on the machine reuses that
binary, and a new pinned version is simply another directory. It runs as a one-node replica
set (its default), so transactions and change streams work as on a MongoDB replica set.

The server is GPL-2.0. Jobplane only starts it as a separate process for development and
tests; it is never linked into Jobplane nor shipped with it.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from jobplane_local.config import ENV_STORE_PORT
from jobplane_local.processes import LocalInfraError, MissingToolError, port_open
from jobplane_local.service import Log, Port, Service, inherited_env

STORE_CRATE = "secantus-mdb"
STORE_BINARY = "secantusd-rs"
STORE_VERSION = "0.5.3-beta.196"
# What a cold build took on a 2-core machine (cargo uses both cores).
BUILD_MINUTES = 6
_PROGRESS_EVERY_SECONDS = 60.0

# What `cargo install` needs besides cargo itself: WiredTiger is C, built with cmake.
BUILD_TOOLS = {
    "cargo": "install Rust with rustup (https://rustup.rs); Debian's cargo is too old",
    "cmake": "Debian: apt-get install cmake (or: pip install cmake)",
    "cc": "a C compiler; Debian: apt-get install build-essential",
}

# Written on every start and passed with --config, so that no secantusd.toml found in the
# user's home or in /etc changes how the local store runs.
_CONFIG_TEXT = "# Written by jobplane-local on every start; the settings are command-line flags.\n"


def store_install_dir(cache_dir: Path) -> Path:
    """Where `cargo install --root` puts the pinned server: one directory per version."""
    return cache_dir / f"{STORE_BINARY}-{STORE_VERSION}"


def store_binary(cache_dir: Path) -> Path:
    return store_install_dir(cache_dir) / "bin" / STORE_BINARY


def installed_version(binary: Path) -> str | None:
    """The version `binary --version` reports (e.g. "0.5.3-beta.196"), None if it cannot run."""
    if not binary.is_file():
        return None
    try:
        result = subprocess.run(  # noqa: S603 - our own binary
            [str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        return None
    first = result.stdout.strip().splitlines()[:1]
    if result.returncode != 0 or not first:
        return None
    name, _, version = first[0].partition(" ")
    return version.strip() if name == STORE_BINARY else None


def missing_build_tools() -> list[str]:
    """`name: how to get it` for every tool the build needs that is not on PATH."""
    return [f"{tool}: {hint}" for tool, hint in BUILD_TOOLS.items() if shutil.which(tool) is None]


def build_command(root: Path) -> list[str]:
    return [
        "cargo", "install", "--locked",
        # The crate declares a newer Rust than it needs; 1.95 builds it.
        "--ignore-rust-version",
        "--version", STORE_VERSION,
        "--root", str(root),
        STORE_CRATE,
    ]  # fmt: skip


@contextmanager
def _build_lock(cache_dir: Path) -> Iterator[None]:
    """One build per version at a time, even across clones: the others wait and reuse it."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / f"{STORE_BINARY}-{STORE_VERSION}.lock").open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def install_store(cache_dir: Path, log: Log) -> Path:
    """The pinned server's binary, built with cargo the first time; returns its path."""
    binary = store_binary(cache_dir)
    if installed_version(binary) == STORE_VERSION:
        return binary
    with _build_lock(cache_dir):
        if installed_version(binary) == STORE_VERSION:  # another clone built it meanwhile
            return binary
        missing = missing_build_tools()
        if missing:
            raise MissingToolError(
                f"building the local store ({STORE_BINARY} {STORE_VERSION}) needs tools that"
                " are not on PATH:\n  " + "\n  ".join(missing)
            )
        _build(cache_dir, log)
    if installed_version(binary) != STORE_VERSION:
        raise LocalInfraError(f"cargo installed {binary}, but it does not run as {STORE_VERSION}")
    return binary


def _build(cache_dir: Path, log: Log) -> None:
    target = store_install_dir(cache_dir)
    # Built into a staging root and renamed at the end: an interrupted build leaves no
    # directory that looks installed. The target dir is kept until success, so that an
    # interrupted build resumes where it stopped.
    staging = target.with_name(target.name + ".partial")
    cargo_target = cache_dir / "build" / f"{STORE_BINARY}-{STORE_VERSION}"
    build_log = cache_dir / f"{STORE_BINARY}-{STORE_VERSION}.build.log"
    shutil.rmtree(staging, ignore_errors=True)
    log(
        f"store: building the local store ({STORE_BINARY} {STORE_VERSION}), first time only,"
        f" about {BUILD_MINUTES} minutes; cargo's output goes to {build_log}"
    )
    began = time.monotonic()
    with build_log.open("w") as out:
        proc = subprocess.Popen(  # noqa: S603 - fixed command
            build_command(staging),
            env=inherited_env(CARGO_TARGET_DIR=str(cargo_target)),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            while True:
                try:
                    returncode = proc.wait(timeout=_PROGRESS_EVERY_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    log(f"store: still building ({time.monotonic() - began:.0f}s so far) ...")
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    if returncode != 0:
        lines = build_log.read_text(errors="replace").strip().splitlines()[-30:]
        raise LocalInfraError(
            f"building the local store failed (cargo exit {returncode}); last lines of"
            f" {build_log}:\n" + "\n".join(lines)
        )
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    shutil.rmtree(cargo_target, ignore_errors=True)
    with contextlib.suppress(OSError):  # other versions' builds may still be in there
        cargo_target.parent.rmdir()
    log(f"store: built {store_binary(cache_dir)} in {time.monotonic() - began:.0f}s")


class Store(Service):
    """`secantusd-rs` as a one-node replica set, data in `.local/store/data`."""

    name = "store"

    @property
    def binary(self) -> Path:
        return store_binary(self.config.cache_dir)

    @property
    def config_file(self) -> Path:
        return self.dir / "secantusd.toml"

    @property
    def marker(self) -> str:
        return f"--storage-path {self.data_dir}"

    @property
    def ports(self) -> list[Port]:
        return [Port(self.config.store_port, "the store", ENV_STORE_PORT)]

    def install(self, log: Log) -> None:
        install_store(self.config.cache_dir, log)

    def prepare(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(_CONFIG_TEXT)

    def command(self) -> list[str]:
        argv = [
            str(self.binary),
            "--config", str(self.config_file),
            "--host", self.config.host,
            "--port", str(self.config.store_port),
            "--storage-path", str(self.data_dir),
            # WiredTiger's cache; the server's default (4G) is sized for a database host.
            "--cache-size", self.config.store_cache_size,
            # The WAL file is allocated in full: 128MB by default for an empty store.
            "--log-file-max", "32MB",
            "--log-level", "WARNING",
        ]  # fmt: skip
        if self.config.store_sync_on_commit:
            # Without it, secantusd-rs 0.5.3 acknowledges a write (even with j: true or
            # w: "majority") before its log record is written: a killed server lost the last
            # 100-300 of 1,000 acknowledged inserts. MongoDB keeps an acknowledged majority
            # write of a replica set; so does this flag (it fsyncs the log at every commit).
            argv.append("--sync-on-commit")
        return argv

    def ready(self) -> bool:
        if not port_open(self.config.host, self.config.store_port):
            return False
        return replica_set_primary(self.config.mongodb_uri)


def replica_set_primary(uri: str) -> bool:
    """True if the server at `uri` answers and accepts writes (as its replica set's primary)."""
    client: MongoClient[dict[str, object]] = MongoClient(
        uri, serverSelectionTimeoutMS=2000, connectTimeoutMS=2000, directConnection=True
    )
    try:
        hello = client.admin.command("hello")
        return bool(hello.get("isWritablePrimary"))
    except PyMongoError:
        return False
    finally:
        client.close()
