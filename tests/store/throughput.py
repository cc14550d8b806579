"""Guarded updates per second as the job collection grows: is the store's cost flat?

    uv run python -m tests.store.throughput [--uri URI] [--sizes 100 1000 10000]

For each size N: a fresh database with the job store's indexes (`JobStore.prepare()`) and N
jobs, then sequential guarded `find_one_and_update`s of the services' shape
(`{_id, attempt, status: {$in: [...]}}`) on random jobs, each one a claim (queued →
dispatched) or a hand-back (dispatched → queued), so that every guard matches. Prints the
rate per size; the database is dropped afterwards. Not a test: figures, no assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from typing import Any

from jobplane.store import JobStore, utcnow
from pymongo import AsyncMongoClient, ReturnDocument

Document = dict[str, Any]
_FLIP = {"queued": "dispatched", "dispatched": "queued"}


async def guarded_updates_per_second(uri: str, size: int, seconds: float) -> float:
    client: AsyncMongoClient[Document] = AsyncMongoClient(uri)
    db = client[f"throughput_{uuid.uuid4().hex[:8]}"]
    try:
        await JobStore(db).prepare()
        now = utcnow()
        status = ["queued"] * size
        for start in range(0, size, 1000):
            await db.jobs.insert_many(
                [
                    {
                        "_id": f"job-{i}",
                        "app_id": f"app-{i % 10}",
                        "status": "queued",
                        "attempt": 1,
                        "attempts": {},
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in range(start, min(start + 1000, size))
                ]
            )
        rng = random.Random(size)
        done = 0
        began = time.perf_counter()
        while time.perf_counter() - began < seconds:
            i = rng.randrange(size)
            doc = await db.jobs.find_one_and_update(
                {"_id": f"job-{i}", "attempt": 1, "status": {"$in": [status[i]]}},
                {"$set": {"status": _FLIP[status[i]], "updated_at": utcnow()}},
                return_document=ReturnDocument.AFTER,
            )
            if doc is None:
                raise RuntimeError(f"the guard of job-{i} matched nothing")
            status[i] = _FLIP[status[i]]
            done += 1
        return done / (time.perf_counter() - began)
    finally:
        await client.drop_database(db.name)
        await client.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uri", default="mongodb://127.0.0.1:27017/")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1_000, 10_000])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured per size")
    args = parser.parse_args()
    for size in args.sizes:
        rate = await guarded_updates_per_second(args.uri, size, args.seconds)
        print(f"{size:>7} jobs: {rate:7.0f} guarded updates/s", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
