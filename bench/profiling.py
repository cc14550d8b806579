"""py-spy on each service process during a run, and the hot spots read from its samples.

py-spy samples a running process from outside (no change to the service), 50 times a second
here, and writes collapsed stacks (`frame;frame;... count`, one line per distinct stack).
"""

from __future__ import annotations

import collections
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
# Frames every sample of a service passes through: they say nothing about where time goes.
ENTRY_POINTS = ("<module> ", "run (jobplane")
IDLE = ("select (selectors.py", "epoll", "_run_once (asyncio/base_events.py", "poll ")


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise RuntimeError("py-spy is missing: uv sync --group bench")
    return found


@dataclass
class Recording:
    name: str
    output: Path
    process: subprocess.Popen[bytes]


def start(name: str, pid: int, directory: Path, rate: int = 50) -> Recording:
    directory.mkdir(parents=True, exist_ok=True)
    output = directory / f"{name}.collapsed.txt"
    # py-spy writes nothing when it fails: an earlier run's file must not pass for this one.
    output.unlink(missing_ok=True)
    argv = [
        py_spy(), "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
        "--output", str(output), "--nonblocking",
    ]  # fmt: skip
    process = subprocess.Popen(  # noqa: S603 - our own argv
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return Recording(name, output, process)


def stop(recording: Recording) -> None:
    """py-spy writes its file when interrupted."""
    if recording.process.poll() is None:
        recording.process.send_signal(signal.SIGINT)
    try:
        recording.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        recording.process.kill()
        recording.process.wait()


def short_frame(frame: str) -> str:
    """`function (path/to/module.py:12)` → `function (module.py)`: one name per function."""
    match = FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    file = match.group("file")
    parts = file.split("/")
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1 :]
    elif "src" in parts:
        parts = parts[len(parts) - 1 - parts[::-1].index("src") + 1 :]
    else:
        parts = parts[-2:]
    return f"{match.group('function')} ({'/'.join(parts)})"


@dataclass(frozen=True)
class HotSpots:
    samples: int
    idle: int
    self_time: list[tuple[str, int]]  # leaf frames: where the CPU is spent
    inclusive: list[tuple[str, int]]  # the project's own functions, with what they call


def hot_spots(collapsed: str, top: int = 10, own: tuple[str, ...] = ("jobplane",)) -> HotSpots:
    leaf: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    samples = idle = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [short_frame(f) for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        samples += count
        if any(mark in stack.rsplit(";", 1)[-1] for mark in IDLE):
            idle += count
            continue
        leaf[frames[-1]] += count
        for frame in dict.fromkeys(f for f in frames if any(o in f for o in own)):
            if frame.startswith(ENTRY_POINTS):
                continue
            inclusive[frame] += count
    return HotSpots(samples, idle, leaf.most_common(top), inclusive.most_common(top))
