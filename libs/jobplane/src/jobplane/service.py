"""Running a service process: logging, signals and a clean, bounded stop.

SIGTERM (or SIGINT) cancels the service's main task, and cancellation is the stop protocol
every part follows: an event loop stops fetching, lets the events in hand finish (at most its
drain timeout; the rest is cancelled uncommitted and handled again by whoever consumes
next), commits what is done and leaves its consumer group; the producer delivers what it
holds. If all that takes longer than ``stop_timeout_s``, or a second signal comes, the
process exits at once with status 1 (nothing is lost: uncommitted events are replayed).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from typing import Any

import uvloop

from jobplane.config import CommonSettings
from jobplane.logs import configure, fields

log = logging.getLogger(__name__)

_CLOSE_S = 5.0


def run(
    service: str,
    main: Coroutine[Any, Any, None],
    log_level: str = "INFO",
    *,
    settings: CommonSettings | None = None,
) -> None:
    """Run ``main`` until it ends or the process gets SIGTERM / SIGINT; exit 0 after a
    clean stop. ``settings`` (when given) set the log level, the repeat interval of error
    logs and the bound of the stop (drain timeout + Kafka delivery timeout + 5 s)."""
    settings = settings or CommonSettings(log_level=log_level)
    repeat_interval_s = settings.log_repeat_interval_seconds
    # Draining, then the producer's last deliveries; a little more for the rest (closing).
    stop_timeout_s = (
        settings.drain_timeout_seconds + settings.kafka_delivery_timeout_seconds + _CLOSE_S
    )
    configure(service, settings.log_level, repeat_interval_s)
    _tune_garbage_collector()
    # uvloop: the services are event-loop bound (many small awaits per event), and libuv's
    # loop spends less CPU on each than asyncio's own.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_until_signalled(service, main, stop_timeout_s))


# Allocations between two young-generation collections (CPython's default: 700).
_GC_YOUNG_THRESHOLD = 10_000


def _tune_garbage_collector() -> None:
    """Keep the collector off the hot paths. What the imports created lives as long as the
    process, yet every full collection walks it again: with the gateway's ~90,000 objects one
    took 65-70 ms (a pause every request under way waits out). Frozen, it is never walked.
    A young generation of 10,000 allocations rather than 700 collects far less often while
    each event allocates hundreds of objects (side by side at half the maximum rate: gateway
    accept p99 62 ms against 96, bench/README.md)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(_GC_YOUNG_THRESHOLD, older, oldest)


async def _until_signalled(
    service: str, main: Coroutine[Any, Any, None], stop_timeout_s: float
) -> None:
    task = asyncio.create_task(main)
    loop = asyncio.get_running_loop()
    stopping = False

    def hard_exit(why: str) -> None:
        log.error("stop did not finish; exiting now", extra=fields(service=service, why=why))
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stdout.flush()
        os._exit(1)

    def on_signal(sig: signal.Signals) -> None:
        nonlocal stopping
        if stopping:
            hard_exit(f"second {sig.name}")
        stopping = True
        log.info("stopping", extra=fields(service=service, signal=sig.name))
        loop.call_later(stop_timeout_s, hard_exit, f"{stop_timeout_s} s passed")
        task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    log.info("started", extra=fields(service=service))
    try:
        await task
    except asyncio.CancelledError:
        if not stopping:
            raise
    log.info("stopped", extra=fields(service=service))
