"""Where the Avro schema files are, and reading them.

Top-level `schemas/` is the source of truth; the `jobplane` wheel carries a copy as
`jobplane/schemas/` so that each service can be deployed alone.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

SCHEMAS_DIR_ENV = "JOBPLANE_SCHEMAS_DIR"

_VERSION_FILE = re.compile(r"v(\d+)\.avsc")


def schemas_dir() -> Path:
    """`$JOBPLANE_SCHEMAS_DIR`, else the copy packaged in the wheel, else the repository's."""
    if env := os.environ.get(SCHEMAS_DIR_ENV):
        return Path(env)
    packaged = Path(__file__).resolve().parent / "schemas"
    if packaged.is_dir():
        return packaged
    # Editable install: this file is libs/jobplane/src/jobplane/schemas.py. (The editable wheel
    # also drops a copy in site-packages/jobplane/schemas; it goes stale, so it is not used.)
    return Path(__file__).resolve().parents[4] / "schemas"


def load_schema(path: Path) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


def current_schema(name: str, directory: Path | None = None) -> dict[str, Any]:
    """The current (newest) version of schema `name`, e.g. `job_requested`."""
    return load_schema((directory or schemas_dir()) / f"{name}.avsc")


def schema_history(name: str, directory: Path | None = None) -> list[tuple[int, dict[str, Any]]]:
    """Every recorded version of schema `name` as (version, schema), oldest first."""
    folder = (directory or schemas_dir()) / "history" / name
    versions: list[tuple[int, dict[str, Any]]] = []
    for path in folder.glob("v*.avsc") if folder.is_dir() else ():
        if match := _VERSION_FILE.fullmatch(path.name):
            versions.append((int(match.group(1)), load_schema(path)))
    return sorted(versions, key=lambda pair: pair[0])
