"""Running a service process: logging, signals and a clean stop."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Coroutine
from typing import Any

from jobplane.logs import configure

log = logging.getLogger(__name__)


def run(service: str, main: Coroutine[Any, Any, None], log_level: str = "INFO") -> None:
    """Run ``main`` until it ends or the process gets SIGTERM / SIGINT."""
    configure(service, log_level)
    asyncio.run(_until_signalled(service, main))


async def _until_signalled(service: str, main: Coroutine[Any, Any, None]) -> None:
    task = asyncio.create_task(main)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    log.info("started", extra={"fields": {"service": service}})
    try:
        await task
    except asyncio.CancelledError:
        log.info("stopped", extra={"fields": {"service": service}})
