"""The retry policy: which tier, when, and when to give up. Pure, no servers."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from jobplane.events import Failure, FailureKind
from jobplane_retry.config import Settings
from jobplane_retry.policy import GiveUp, RetryPolicy, ScheduleRetry

NOW = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
DEFAULT_DELAYS = [30.0, 120.0, 600.0, 1800.0, 3600.0]


def failure(retryable: bool = True, message: str = "backend unreachable") -> Failure:
    return Failure(kind=FailureKind.UNREACHABLE, message=message, retryable=retryable)


def scheduled(decision: object) -> ScheduleRetry:
    assert isinstance(decision, ScheduleRetry), decision
    return decision


def test_defaults_from_settings() -> None:
    settings = Settings()
    assert settings.max_retries == 5
    assert settings.retry_delays_seconds == DEFAULT_DELAYS
    assert settings.jitter == 0.1
    assert settings.router_group_id == "jobplane-retry-router"
    assert settings.tiers_group_id == "jobplane-retry-tiers"


def test_settings_read_delays_from_env_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETRY_DELAYS_SECONDS", "[0.5, 1, 2]")
    monkeypatch.setenv("MAX_RETRIES", "3")
    monkeypatch.setenv("JITTER", "0")
    settings = Settings()
    assert settings.retry_delays_seconds == [0.5, 1.0, 2.0]
    assert settings.max_retries == 3
    assert settings.jitter == 0.0


def test_settings_refuse_more_retries_than_tiers() -> None:
    with pytest.raises(ValueError):
        Settings(max_retries=6)


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5])
def test_attempt_n_failing_schedules_tier_n_with_its_delay(attempt: int) -> None:
    policy = RetryPolicy(jitter=0.0)
    decision = scheduled(policy.decide(failure(), attempt, NOW))
    assert decision.tier == attempt
    expected = NOW + timedelta(seconds=DEFAULT_DELAYS[attempt - 1])
    # Rounded up to the millisecond the wire keeps, never down.
    assert expected <= decision.due_at < expected + timedelta(milliseconds=1)
    assert decision.due_at.microsecond % 1000 == 0


def test_delays_grow() -> None:
    policy = RetryPolicy(jitter=0.0)
    dues = [scheduled(policy.decide(failure(), n, NOW)).due_at for n in range(1, 6)]
    assert dues == sorted(dues)
    assert len(set(dues)) == 5


@pytest.mark.parametrize("seed", range(20))
def test_jitter_only_adds_and_stays_within_bounds(seed: int) -> None:
    policy = RetryPolicy(jitter=0.1, rng=random.Random(seed))
    for attempt in range(1, 6):
        base = timedelta(seconds=DEFAULT_DELAYS[attempt - 1])
        due_at = scheduled(policy.decide(failure(), attempt, NOW)).due_at
        assert due_at >= NOW + base  # never early
        assert due_at <= NOW + base * 1.1 + timedelta(milliseconds=1)


def test_jitter_spreads_due_times() -> None:
    policy = RetryPolicy(jitter=0.1, rng=random.Random(7))
    dues = {scheduled(policy.decide(failure(), 1, NOW)).due_at for _ in range(50)}
    assert len(dues) > 10


def test_gives_up_after_max_retries() -> None:
    policy = RetryPolicy()
    decision = policy.decide(failure(message="HTTP 503"), 6, NOW)
    assert decision == GiveUp("failed 6 attempts; last error: HTTP 503")


def test_custom_max_retries() -> None:
    policy = RetryPolicy(max_retries=2)
    assert scheduled(policy.decide(failure(), 2, NOW)).tier == 2
    assert policy.decide(failure(message="boom"), 3, NOW) == GiveUp(
        "failed 3 attempts; last error: boom"
    )


def test_no_retries_at_all() -> None:
    policy = RetryPolicy(max_retries=0)
    assert isinstance(policy.decide(failure(), 1, NOW), GiveUp)


@pytest.mark.parametrize("attempt", [1, 3, 6])
def test_non_retryable_failure_gives_up_at_once(attempt: int) -> None:
    policy = RetryPolicy()
    decision = policy.decide(
        failure(retryable=False, message="HTTP 400: bad payload"), attempt, NOW
    )
    assert decision == GiveUp("permanent failure: HTTP 400: bad payload")


def test_custom_delays() -> None:
    policy = RetryPolicy(delays_seconds=[0.5, 1.5, 4, 8, 16], jitter=0.0)
    due = scheduled(policy.decide(failure(), 2, NOW)).due_at
    assert NOW + timedelta(seconds=1.5) <= due < NOW + timedelta(seconds=1.5, milliseconds=1)


def test_short_table_doubles_its_last_delay() -> None:
    policy = RetryPolicy(delays_seconds=[10, 20], jitter=0.0)
    assert [policy.base_delay(n) for n in range(1, 6)] == [10, 20, 40, 80, 160]


def test_doubling_is_capped_by_max_backoff() -> None:
    policy = RetryPolicy(delays_seconds=[10, 20], max_backoff_seconds=50, jitter=0.0)
    assert [policy.base_delay(n) for n in range(1, 6)] == [10, 20, 40, 50, 50]


def test_policy_from_settings() -> None:
    settings = Settings(retry_delays_seconds=[1, 2], max_retries=3, jitter=0)
    policy = RetryPolicy.from_settings(settings)
    assert [policy.base_delay(n) for n in range(1, 4)] == [1, 2, 4]
    assert isinstance(policy.decide(failure(), 4, NOW), GiveUp)


def test_invalid_configuration_is_refused() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(delays_seconds=[])
    with pytest.raises(ValueError):
        RetryPolicy(jitter=-0.1)
    with pytest.raises(ValueError):
        RetryPolicy(max_retries=6)
