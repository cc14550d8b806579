"""Error lines during an outage: one per cause per interval, with a count, and one line when
the dependency is back (a store or Kafka outage would otherwise write a line per request)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from jobplane.logs import fields

DEFAULT_INTERVAL_SECONDS = 10.0


class RateLimitedLog:
    def __init__(
        self,
        log: logging.Logger,
        interval_seconds: float = DEFAULT_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = log
        self.interval_seconds = interval_seconds
        self.clock = clock
        self._last: dict[str, float] = {}  # cause → when its last line was written
        self._suppressed: dict[str, int] = {}

    def warning(self, message: str, *, cause: str, **values: Any) -> bool:
        """Log ``message`` unless ``cause`` was logged within the interval; True if written."""
        now = self.clock()
        last = self._last.get(cause)
        if last is not None and now - last < self.interval_seconds:
            self._suppressed[cause] = self._suppressed.get(cause, 0) + 1
            return False
        suppressed = self._suppressed.pop(cause, 0)
        self._last[cause] = now
        self.log.warning(
            message, extra=fields(cause=cause, suppressed_since_last=suppressed, **values)
        )
        return True

    def recovered(self, message: str) -> None:
        """After failures were logged: one line saying it works again, with the count."""
        if not self._last:
            return
        failures = len(self._last) + sum(self._suppressed.values())
        causes = sorted(self._last)
        self._last.clear()
        self._suppressed.clear()
        self.log.info(message, extra=fields(causes=causes, failures_logged_or_counted=failures))
