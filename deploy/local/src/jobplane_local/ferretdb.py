"""FerretDB 1.24.2 (MongoDB wire protocol over SQLite), built from deploy/local/ferretdb/."""

from __future__ import annotations

import hashlib
import subprocess
import time
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from jobplane_local.config import ENV_FERRETDB_PORT
from jobplane_local.paths import deploy_dir
from jobplane_local.processes import LocalInfraError, port_open, require_tool
from jobplane_local.service import Log, Port, Service, inherited_env

GO_HINT = "install Go 1.24+ (https://go.dev/dl/, or Debian: apt-get install golang-go)"
_SOURCES = ("go.mod", "go.sum", "main.go")


class FerretDB(Service):
    name = "ferretdb"

    @property
    def module_dir(self) -> Path:
        return deploy_dir() / "ferretdb"

    @property
    def binary(self) -> Path:
        return self.dir / "bin" / "ferretdb"

    @property
    def marker(self) -> str:
        return f"file:{self.data_dir}/"

    @property
    def ports(self) -> list[Port]:
        return [Port(self.config.ferretdb_port, "FerretDB", ENV_FERRETDB_PORT)]

    def _sources_digest(self) -> str:
        digest = hashlib.sha256()
        for name in _SOURCES:
            digest.update((self.module_dir / name).read_bytes())
        return digest.hexdigest()

    def install(self, log: Log) -> None:
        stamp = self.binary.with_name("ferretdb.sha256")
        digest = self._sources_digest()
        if self.binary.is_file() and stamp.is_file() and stamp.read_text().strip() == digest:
            return
        go = require_tool("go", GO_HINT)
        log(f"ferretdb: building {self.binary} with Go (a few minutes the first time) ...")
        began = time.monotonic()
        self.binary.parent.mkdir(parents=True, exist_ok=True)
        partial = self.binary.with_name("ferretdb.partial")
        # GOMODCACHE, GOCACHE, GOPROXY, GOFLAGS ... are honoured from the environment.
        result = subprocess.run(  # noqa: S603
            [go, "build", "-mod=readonly", "-buildvcs=false", "-o", str(partial), "."],
            cwd=self.module_dir,
            env=inherited_env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip().splitlines()[-30:]
            raise LocalInfraError(
                f"building FerretDB failed (exit {result.returncode}):\n" + "\n".join(output)
            )
        partial.replace(self.binary)
        stamp.write_text(digest + "\n")
        log(f"ferretdb: built in {time.monotonic() - began:.1f}s")

    def command(self) -> list[str]:
        return [
            str(self.binary),
            f"--listen-addr={self.address}",
            # Writers take SQLite's write lock when their transaction begins, so concurrent
            # writers wait for each other (busy_timeout) instead of failing with SQLITE_BUSY
            # when a read transaction cannot be upgraded. In WAL mode, synchronous=NORMAL
            # survives a crash of any process; only an OS crash may lose the last commits,
            # which a development store can afford for ~30% more writes per second.
            f"--sqlite-url={self.marker}?_txlock=immediate&_pragma=synchronous(normal)",
            # FerretDB 1.24 logs a warning for every `endSessions` a driver sends on close.
            "--log-level=error",
        ]

    def ready(self) -> bool:
        if not port_open(self.config.host, self.config.ferretdb_port):
            return False
        return mongodb_answers(self.config.mongodb_uri)


def mongodb_answers(uri: str) -> bool:
    """True if the server at `uri` answers `ping`."""
    client: MongoClient[dict[str, object]] = MongoClient(
        uri, serverSelectionTimeoutMS=2000, connectTimeoutMS=2000
    )
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()
