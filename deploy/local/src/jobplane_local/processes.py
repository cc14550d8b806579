"""Process plumbing: required tools, pid files, port checks, detached start, wait and stop."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


class LocalInfraError(RuntimeError):
    """Something the user has to fix: a missing tool, a taken port, a server that did not start."""


class MissingToolError(LocalInfraError):
    pass


class PortInUseError(LocalInfraError):
    pass


class StartError(LocalInfraError):
    pass


def require_tool(name: str, install_hint: str) -> str:
    """The absolute path of executable `name`, or MissingToolError saying what to install."""
    found = shutil.which(name)
    if found is None:
        raise MissingToolError(f"{name} not found: {install_hint}")
    return found


# --- pid files ------------------------------------------------------------------------------


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def write_pid(pid_file: Path, pid: int) -> None:
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = pid_file.with_name(pid_file.name + ".tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(pid_file)


def pid_alive(pid: int, marker: str | None = None) -> bool:
    """True if `pid` runs (zombies count as dead) and, given a marker, its command line has it.

    The marker guards against a recycled pid after a reboot or a crash.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    proc = Path("/proc") / str(pid)
    try:
        stat = (proc / "stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
        if marker is not None:
            return marker in _cmdline(proc)
    except (OSError, IndexError):
        return marker is None  # no /proc: trust kill(0) unless we needed the command line
    return True


def _cmdline(proc: Path) -> str:
    """The command line of a process. Right after a fork it can read empty for a moment
    (the exec is still in progress), so an empty one is read again before we believe it."""
    for _ in range(50):
        raw = (proc / "cmdline").read_bytes()
        if raw:
            return raw.replace(b"\0", b" ").decode(errors="replace")
        time.sleep(0.01)
    return ""


def running_pid(pid_file: Path, marker: str) -> int | None:
    """The pid recorded in `pid_file` if that process is still ours and alive."""
    pid = read_pid(pid_file)
    if pid is not None and pid_alive(pid, marker):
        return pid
    return None


# --- ports ----------------------------------------------------------------------------------


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_bindable(host: str, port: int) -> bool:
    """True if we could listen on host:port right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def ensure_port_free(host: str, port: int, *, what: str, env_var: str) -> None:
    """Raise PortInUseError, naming the port and the env var to pick another, if it is taken."""
    if port_open(host, port) or not port_bindable(host, port):
        raise PortInUseError(
            f"port {port} on {host} (for {what}) is already in use by another process;"
            f" stop that process or choose another port, e.g. {env_var}={port + 10000}"
        )


# --- start, wait, stop ----------------------------------------------------------------------


def start_detached(
    argv: Sequence[str],
    *,
    log_file: Path,
    cwd: Path,
    env: dict[str, str] | None = None,
    nice: int = 0,
) -> int:
    """Start argv in its own session (it outlives us), stdout+stderr appended to log_file;
    with ``nice`` > 0, at that lower CPU priority (see `niced`)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        proc = subprocess.Popen(  # noqa: S603 - argv is built by this package
            niced(argv, nice),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    if nice > 0:
        set_session_nice(proc.pid, nice)
    return proc.pid


def niced(argv: Sequence[str], nice: int) -> list[str]:
    """argv run by `nice` (coreutils), so that every thread it starts has the lower priority
    from its birth: that is what weighs between the processes of one cgroup (a container)."""
    found = shutil.which("nice") if nice > 0 else None
    return [found, "-n", str(nice), *argv] if found else list(argv)


def set_session_nice(pid: int, nice: int) -> None:
    """The nice value of the session ``pid`` leads, where the kernel groups by session.

    A detached process is a session of its own, and Linux's autogroup scheduling (on unless a
    cgroup holds the process) shares the cores between sessions by the session's nice
    value, whatever each thread's own: without this, `niced` would change nothing. Where there
    is no autogroup, or raising the value is refused, the threads' own nice still applies."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def wait_until_ready(
    ready: Callable[[], bool],
    *,
    what: str,
    pid: int,
    marker: str,
    log_file: Path,
    timeout: float,
    interval: float = 0.25,
) -> None:
    """Poll `ready` until it returns True; StartError with the log's tail on death or timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if ready():
            return
        if not pid_alive(pid, marker):
            reap_child(pid)
            raise StartError(
                f"{what} (pid {pid}) exited during start-up; last lines of {log_file}:\n"
                + tail(log_file)
            )
        if time.monotonic() > deadline:
            raise StartError(
                f"{what} (pid {pid}) did not become ready within {timeout:.0f}s;"
                f" last lines of {log_file}:\n" + tail(log_file)
            )
        time.sleep(interval)


def reap_child(pid: int) -> None:
    """Collect our own exited child so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop_process(pid: int, marker: str, *, timeout: float = 30.0) -> bool:
    """SIGTERM the process group of `pid`, SIGKILL after `timeout`. False if it was not running."""
    if not pid_alive(pid, marker):
        return False
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            reap_child(pid)
            # No marker here: an exiting process can lose its command line before it is gone.
            if not pid_alive(pid):
                return True
            time.sleep(0.1)
    reap_child(pid)
    return True
