"""Per-app concurrency limits."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from jobplane.store import App
from jobplane_dispatcher.limits import AppLimits


def app(app_id: str, max_concurrency: int) -> App:
    return App(
        app_id=app_id,
        backend_url="http://backend.test/jobs",
        default_timeout_seconds=60,
        admin_emails=[],
        api_key_hash="0" * 64,
        max_concurrency=max_concurrency,
        created_at=datetime.now(UTC),
    )


async def run_calls(limits: AppLimits, the_app: App, n: int) -> int:
    """Run ``n`` calls within the app's limit; returns the most that ran at once."""
    running = 0
    most = 0

    async def call() -> None:
        nonlocal running, most
        async with limits.slot(the_app):
            running += 1
            most = max(most, running)
            await asyncio.sleep(0.01)
            running -= 1

    await asyncio.gather(*(call() for _ in range(n)))
    return most


async def test_an_app_never_exceeds_its_max_concurrency() -> None:
    assert await run_calls(AppLimits(), app("a", 3), 20) == 3


async def test_apps_do_not_share_their_slots() -> None:
    limits = AppLimits()
    a, b = app("a", 2), app("b", 5)
    results = await asyncio.gather(run_calls(limits, a, 10), run_calls(limits, b, 10))
    assert list(results) == [2, 5]


def test_the_semaphore_is_created_once_per_app() -> None:
    limits = AppLimits()
    assert limits.semaphore(app("a", 4)) is limits.semaphore(app("a", 4))
    assert limits.semaphore(app("a", 4)) is not limits.semaphore(app("b", 4))


def test_a_changed_limit_takes_effect() -> None:
    limits = AppLimits()
    first = limits.semaphore(app("a", 4))
    assert limits.semaphore(app("a", 8)) is not first


async def test_a_zero_limit_still_lets_one_call_through() -> None:
    assert await run_calls(AppLimits(), app("a", 0), 3) == 1
