"""When a failed attempt is retried, and when the job is given up: pure decisions.

The N-th retry (tier N, topic ``job.retry.N``) follows the failure of attempt N. Its delay is
the N-th entry of the configured table (a short table is extended by doubling its last
entry), capped by ``max_backoff``, plus a random jitter that only ever adds time: a retry is
never due earlier than its configured delay.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeAlias

from jobplane.events import Failure
from jobplane.topics import RETRY_TIERS

from jobplane_retry.config import Settings


@dataclass(frozen=True, slots=True)
class ScheduleRetry:
    tier: int  # the N-th retry, after attempt N failed
    due_at: datetime


@dataclass(frozen=True, slots=True)
class GiveUp:
    reason: str


RetryDecision: TypeAlias = ScheduleRetry | GiveUp


class RetryPolicy:
    def __init__(
        self,
        *,
        max_retries: int = 5,
        delays_seconds: Sequence[float] = (30.0, 120.0, 600.0, 1800.0, 3600.0),
        max_backoff_seconds: float = 6 * 3600.0,
        jitter: float = 0.1,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 <= max_retries <= RETRY_TIERS:
            raise ValueError(f"max_retries must be 0..{RETRY_TIERS}, got {max_retries}")
        if not delays_seconds or any(d < 0 for d in delays_seconds):
            raise ValueError("delays_seconds must be a non-empty list of delays >= 0")
        if jitter < 0:
            raise ValueError("jitter must be >= 0")
        self.max_retries = max_retries
        self.delays_seconds = tuple(delays_seconds)
        self.max_backoff_seconds = max_backoff_seconds
        self.jitter = jitter
        self._rng = rng or random.Random()

    @classmethod
    def from_settings(cls, settings: Settings, rng: random.Random | None = None) -> RetryPolicy:
        return cls(
            max_retries=settings.max_retries,
            delays_seconds=settings.retry_delays_seconds,
            max_backoff_seconds=settings.max_backoff_seconds,
            jitter=settings.jitter,
            rng=rng,
        )

    def base_delay(self, tier: int) -> float:
        """The delay in seconds before the ``tier``-th retry, without jitter."""
        if tier < 1:
            raise ValueError(f"retry tiers are 1-based, got {tier}")
        table = self.delays_seconds
        extra = tier - len(table)  # tiers beyond the table double its last delay
        delay = table[tier - 1] if extra <= 0 else table[-1] * 2.0**extra
        return min(delay, self.max_backoff_seconds)

    def delay(self, tier: int) -> float:
        """The delay before the ``tier``-th retry with jitter: in [base, base * (1 + jitter)]."""
        base = self.base_delay(tier)
        return base * (1.0 + self.jitter * self._rng.random())

    def decide(self, failure: Failure, attempt: int, now: datetime) -> RetryDecision:
        """What to do after attempt ``attempt`` failed with ``failure`` at ``now``."""
        if not failure.retryable:
            return GiveUp(f"permanent failure: {failure.message}")
        if attempt > self.max_retries:
            return GiveUp(f"failed {attempt} attempts; last error: {failure.message}")
        due_at = _ceil_to_millisecond(now + timedelta(seconds=self.delay(attempt)))
        return ScheduleRetry(tier=attempt, due_at=due_at)


def _ceil_to_millisecond(moment: datetime) -> datetime:
    # Kafka (Avro timestamp-millis) and BSON keep milliseconds: rounding up keeps the stored
    # due time from ever being earlier than the computed one.
    micros = moment.microsecond
    rounded = math.ceil(micros / 1000) * 1000
    if rounded == micros:
        return moment
    return moment.replace(microsecond=0) + timedelta(microseconds=rounded)
