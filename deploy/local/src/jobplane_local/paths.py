"""Where the local infrastructure lives: the repository root and its git-ignored `.local/`."""

from __future__ import annotations

import os
from pathlib import Path

_MARKER = Path("deploy/local/kafka/pom.xml")


def repo_root() -> Path:
    """The Jobplane repository root.

    `JOBPLANE_ROOT` wins; otherwise the nearest ancestor (of this file, then of the current
    directory) that holds `deploy/local/kafka/pom.xml`.
    """
    explicit = os.environ.get("JOBPLANE_ROOT")
    if explicit:
        return Path(explicit).resolve()
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        for candidate in (start, *start.parents):
            if (candidate / _MARKER).is_file():
                return candidate
    raise RuntimeError(
        "cannot find the Jobplane repository root (a directory holding deploy/local/kafka/pom.xml);"
        " run from inside the repository or set JOBPLANE_ROOT"
    )


def deploy_dir() -> Path:
    """`deploy/local/` in the repository: the Maven pom of the Kafka jars."""
    return repo_root() / "deploy" / "local"


def default_local_dir() -> Path:
    """`.local/` at the repository root: downloads, builds, data, logs and pid files."""
    return repo_root() / ".local"


def default_cache_dir() -> Path:
    """`${XDG_CACHE_HOME:-~/.cache}/jobplane`: builds every clone on this machine reuses."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).resolve() / "jobplane"
