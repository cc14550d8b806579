"""A short per-document lock, built on the one write both MongoDB and FerretDB make atomic.

Real MongoDB updates a single document atomically, but FerretDB (the local store) applies an
update as read, modify, write back: two concurrent updates of one job can both pass the same
guard, and one can erase the other's fields. Inserting a document with a given ``_id`` is
atomic on both (the unique ``_id`` index decides), so every change of a job's state first
takes that job's lock by inserting it, and releases it by deleting it. A holder that died
leaves a lock that expires after ``ttl``, after which the next writer takes it over.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError


class LockTimeoutError(Exception):
    """The lock stayed held by others for longer than we were willing to wait."""


class DocumentLocks:
    def __init__(
        self,
        collection: AsyncCollection[dict[str, Any]],
        *,
        ttl: timedelta = timedelta(seconds=10),
        wait: timedelta = timedelta(seconds=30),
    ) -> None:
        self.collection = collection
        self.ttl = ttl
        self.wait = wait

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        owner = secrets.token_hex(8)
        await self._acquire(key, owner)
        try:
            yield
        finally:
            await self.collection.delete_one({"_id": key, "owner": owner})

    async def _acquire(self, key: str, owner: str) -> None:
        give_up = datetime.now(UTC) + self.wait
        pause = 0.002
        while True:
            now = datetime.now(UTC)
            try:
                await self.collection.insert_one(
                    {"_id": key, "owner": owner, "expires_at": now + self.ttl}
                )
                return
            except DuplicateKeyError:
                held = await self.collection.find_one({"_id": key})
                if held is not None and held["expires_at"] < now:
                    # Its holder died mid-change; the change it guarded is redone by a replay.
                    await self.collection.delete_one({"_id": key, "owner": held["owner"]})
                    continue
            if now > give_up:
                raise LockTimeoutError(f"lock {key!r} held for more than {self.wait}")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)
