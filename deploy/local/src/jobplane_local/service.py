"""The life cycle shared by the three local servers: install, start (or reuse), stop, status."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from jobplane_local.config import LocalConfig
from jobplane_local.processes import (
    StartError,
    ensure_port_free,
    pid_alive,
    port_bindable,
    port_open,
    reap_child,
    running_pid,
    start_detached,
    stop_process,
    wait_until_ready,
    write_pid,
)

Log = Callable[[str], None]


@dataclass(frozen=True)
class Port:
    number: int
    what: str
    env_var: str


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    running: bool
    pid: int | None
    address: str
    data_dir: Path
    log_file: Path


class Service(ABC):
    """One local server run as a detached process, tracked by `.local/<name>/<name>.pid`."""

    name: str
    stop_timeout: float = 30.0

    def __init__(self, config: LocalConfig) -> None:
        self.config = config

    @property
    def dir(self) -> Path:
        return self.config.local_dir / self.name

    @property
    def pid_file(self) -> Path:
        return self.dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.dir / f"{self.name}.log"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    @abstractmethod
    def marker(self) -> str:
        """A string in this server's command line, to recognise our process behind a pid."""

    @property
    @abstractmethod
    def ports(self) -> list[Port]: ...

    @property
    def background(self) -> bool:
        """Work nobody waits for on the spot: it runs at the configured lower CPU priority
        (``background_nice``), so that what answers people gets a core first."""
        return False

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.ports[0].number}"

    def install(self, log: Log) -> None:  # noqa: B027 - optional hook
        """Download or build what the server needs; a no-op when it is already there."""

    def prepare(self) -> None:  # noqa: B027 - optional hook
        """Write configuration and initialise data before a fresh start."""

    @abstractmethod
    def command(self) -> list[str]: ...

    def environment(self) -> dict[str, str] | None:
        return None

    @abstractmethod
    def ready(self) -> bool:
        """True once the server really answers requests."""

    def pid(self) -> int | None:
        return running_pid(self.pid_file, self.marker)

    def start(self, log: Log) -> int:
        """Start the server, or reuse the one already running; return once it answers."""
        began = time.monotonic()
        self.install(log)
        pid = self.pid()
        if pid is not None:
            self._wait(pid)
            log(f"{self.name}: already running (pid {pid}){self._on()}")
            return pid
        for port in self.ports:
            ensure_port_free(self.config.host, port.number, what=port.what, env_var=port.env_var)
        self.prepare()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        pid = start_detached(
            self.command(),
            log_file=self.log_file,
            cwd=self.dir,
            env=self.environment(),
            nice=self.config.background_nice if self.background else 0,
        )
        write_pid(self.pid_file, pid)
        launched = time.monotonic()
        try:
            self._wait(pid)
        except StartError:
            stop_process(pid, self.marker, timeout=5.0)
            self.pid_file.unlink(missing_ok=True)
            raise
        log(
            f"{self.name}: started (pid {pid}){self._on()} and ready in"
            f" {time.monotonic() - launched:.1f}s ({time.monotonic() - began:.1f}s in all),"
            f" log {self.log_file}"
        )
        return pid

    def _on(self) -> str:
        # A server without an address (a consumer) says nothing rather than "on -".
        return f" on {self.address}" if self.address else ""

    def _wait(self, pid: int) -> None:
        wait_until_ready(
            self.ready,
            what=self.name,
            pid=pid,
            marker=self.marker,
            log_file=self.log_file,
            timeout=self.config.start_timeout,
        )

    def stop(self, log: Log) -> None:
        pid = self.pid()
        if pid is None:
            log(f"{self.name}: not running")
        else:
            stop_process(pid, self.marker, timeout=self.stop_timeout)
            self._wait_for_ports()
            log(f"{self.name}: stopped (pid {pid})")
        self.pid_file.unlink(missing_ok=True)

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
            reap_child(pid)
            time.sleep(0.05)
        self._wait_for_ports()
        self.pid_file.unlink(missing_ok=True)
        log(f"{self.name}: killed (SIGKILL, pid {pid})")
        return pid

    def _wait_for_ports(self, timeout: float = 10.0) -> None:
        """Until the ports are free again (at most ``timeout``). A killed process's main
        thread is a zombie, so "gone" to `pid_alive`, while its other threads still close its
        sockets: a start at once found the store's port in use."""
        deadline = time.monotonic() + timeout
        host = self.config.host
        while time.monotonic() < deadline and any(
            port_open(host, p.number) or not port_bindable(host, p.number) for p in self.ports
        ):
            time.sleep(0.05)

    def status(self) -> ServiceStatus:
        pid = self.pid()
        return ServiceStatus(
            name=self.name,
            running=pid is not None and self.ready(),
            pid=pid,
            address=self.address,
            data_dir=self.data_dir,
            log_file=self.log_file,
        )


def inherited_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env
