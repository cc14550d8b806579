"""The read-through cache: values live at most the TTL, misses are never cached."""

from __future__ import annotations

from jobplane.cache import TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_value_is_served_from_the_cache_until_its_ttl_runs_out() -> None:
    clock = Clock()
    cache: TtlCache[str, int] = TtlCache(5.0, clock=clock)
    loads: list[int] = []

    async def load() -> int:
        loads.append(1)
        return len(loads)

    assert await cache.get("a", load) == 1
    clock.now = 4.9
    assert await cache.get("a", load) == 1
    clock.now = 5.1
    assert await cache.get("a", load) == 2
    assert len(loads) == 2


async def test_a_miss_is_not_cached_so_a_new_entry_is_seen_at_once() -> None:
    cache: TtlCache[str, int] = TtlCache(60.0)
    value: int | None = None

    async def load() -> int | None:
        return value

    assert await cache.get("a", load) is None
    value = 7
    assert await cache.get("a", load) == 7


async def test_invalidate_and_the_entry_bound() -> None:
    cache: TtlCache[str, int] = TtlCache(60.0, max_entries=2)
    calls = 0

    async def load() -> int:
        nonlocal calls
        calls += 1
        return calls

    await cache.get("a", load)
    cache.invalidate("a")
    assert await cache.get("a", load) == 2
    await cache.get("b", load)
    await cache.get("c", load)  # evicts "a", the least recently used
    assert await cache.get("a", load) == 5
