"""With a retention set (JOB_RETENTION_DAYS), the server deletes finished jobs past it, and
never a job that has not finished (it has no `finished_at`).

The server's TTL monitor runs about once a minute (MongoDB: every 60 s; secantusd-rs
0.5.3 deleted within 45 s when measured), so this test waits up to three minutes.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

from jobplane.store import JobStore, utcnow
from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]

TTL_MONITOR_WAIT_SECONDS = 180


async def test_finished_jobs_past_the_retention_are_deleted_and_no_other(
    mongo_db: AsyncDatabase[Document],
) -> None:
    store = JobStore(mongo_db, retention_days=1)
    await store.prepare()
    now = utcnow()
    await store.jobs.insert_many(
        [
            {
                "_id": "finished-2-days-ago",
                "status": "succeeded",
                "finished_at": now - timedelta(2),
            },
            {"_id": "dead-2-days-ago", "status": "dead", "finished_at": now - timedelta(2)},
            {"_id": "finished-just-now", "status": "succeeded", "finished_at": now},
            # Created long ago but never finished: kept however old.
            {"_id": "running", "status": "running", "created_at": now - timedelta(30)},
            {
                "_id": "retry-scheduled",
                "status": "retry_scheduled",
                "created_at": now - timedelta(30),
            },
        ]
    )
    expired = {"finished-2-days-ago", "dead-2-days-ago"}
    began = time.monotonic()
    while time.monotonic() - began < TTL_MONITOR_WAIT_SECONDS:
        left = {doc["_id"] async for doc in store.jobs.find({}, projection={"_id": 1})}
        if not left & expired:
            break
        await asyncio.sleep(2)
    assert left == {"finished-just-now", "running", "retry-scheduled"}, (
        f"after {time.monotonic() - began:.0f}s the server still holds {sorted(left)}"
    )
