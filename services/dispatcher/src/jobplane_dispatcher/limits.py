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
