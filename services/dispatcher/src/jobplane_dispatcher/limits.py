"""Bounded concurrency per app: at most ``app.max_concurrency`` calls to its backend at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from jobplane.store import App


class AppLimits:
    """One semaphore per app, created on the app's first dispatch."""

    def __init__(self) -> None:
        self._semaphores: dict[str, tuple[int, asyncio.Semaphore]] = {}

    def semaphore(self, app: App) -> asyncio.Semaphore:
        size = max(1, app.max_concurrency)
        known = self._semaphores.get(app.app_id)
        if known is None or known[0] != size:
            # A changed limit takes effect for new calls; calls in flight keep their old slot.
            known = (size, asyncio.Semaphore(size))
            self._semaphores[app.app_id] = known
        return known[1]

    @asynccontextmanager
    async def slot(self, app: App) -> AsyncIterator[None]:
        async with self.semaphore(app):
            yield


class KeyedLocks:
    """One lock per key (a job id) while anyone holds or waits for it; forgotten after.

    Duplicates of one job's event arrive on the same partition, so one dispatcher instance
    handles them; handling them one after the other makes the second see the first's claim.
    The store's guarded update is the real guard, but FerretDB 1.24 (the local store) does
    not apply a conditional update atomically when two race, so this keeps one instance from
    racing itself.
    """

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)
