"""A service process: what jobplane.service.run sets up before the service's main runs."""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = """
import gc, json
from jobplane import service

async def main():
    print(json.dumps({"threshold": gc.get_threshold(), "frozen": gc.get_freeze_count()}))

service.run("probe", main())
"""


def test_the_collector_leaves_startup_objects_alone_and_collects_young_ones_less_often() -> None:
    done = subprocess.run(  # noqa: S603 - our own interpreter and probe
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    probe = json.loads(next(line for line in done.stdout.splitlines() if '"threshold"' in line))
    assert probe["threshold"][0] == 10_000
    assert probe["frozen"] > 10_000  # the imports' objects (logging, asyncio, pydantic, ...)
