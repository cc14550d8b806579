"""A small read-through cache with a hard bound on staleness.

Apps and users are read on every job (the gateway checks both, the dispatcher needs the
app's backend, the notifier the user's address) but change rarely. Reading them through
this cache takes those reads off the store's hot path; ``ttl_seconds`` is the longest a
change can stay unseen by one process. Misses are not cached, so a newly registered app or
user is visible at once.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    def __init__(
        self,
        ttl_seconds: float,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    async def get(self, key: K, load: Callable[[], Awaitable[V | None]]) -> V | None:
        """The cached value of ``key`` if younger than the TTL, else ``load()``'s."""
        now = self.clock()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            self._entries.move_to_end(key)
            return entry[1]
        value = await load()
        if value is None:
            self._entries.pop(key, None)
        else:
            self.put(key, value, now=now)
        return value

    def put(self, key: K, value: V, *, now: float | None = None) -> None:
        expires = (self.clock() if now is None else now) + self.ttl_seconds
        self._entries[key] = (expires, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def invalidate(self, key: K) -> None:
        """Forget ``key`` (this process changed it: its next read must see the change)."""
        self._entries.pop(key, None)
