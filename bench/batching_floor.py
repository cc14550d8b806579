"""Does the store commit a batched write once or once per document?

Against a store run with `--sync-on-commit` (every commit fsyncs): N single `insert_one`s and N
guarded `update_one`s, 32 at a time, against one `insert_many(ordered=False)` and `update_many`s
of `batch` documents each (filter: an `$or` of per-document `(_id, claim_id)` guards, as the
notifier's "sent" write); then concurrent claims, a `find_one_and_update` each against the
store's batched guarded writes (`JobStore.claim_attempt`). Prints documents/s for each.

    uv run python -m bench.batching_floor mongodb://127.0.0.1:27400/ --docs 2000 --batch 32
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from jobplane.store import JobStore, NewJob
from pymongo import UpdateOne


async def measure(uri: str, docs: int, batch: int, concurrency: int) -> dict[str, float]:
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri)
    database = f"benchbatch{uuid.uuid4().hex[:8]}"
    jobs = client[database]["jobs"]
    slots = asyncio.Semaphore(concurrency)
    now = datetime.now(UTC)
    figures: dict[str, float] = {}

    def document(job_id: str) -> dict[str, Any]:
        claim = {"state": "claimed", "claim_id": job_id}
        return {"_id": job_id, "status": "succeeded", "attempt": 1, "created_at": now,
                "payload": "{}", "mail": {"succeeded": claim}}  # fmt: skip

    async def timed(name: str, calls: list[Any]) -> None:
        async def one(call: Any) -> None:
            async with slots:
                await call()

        began = time.monotonic()
        await asyncio.gather(*(one(c) for c in calls))
        figures[name] = docs / (time.monotonic() - began)

    try:
        single = [uuid.uuid4().hex for _ in range(docs)]
        batched = [uuid.uuid4().hex for _ in range(docs)]
        groups = [batched[i : i + batch] for i in range(0, docs, batch)]
        await timed("insert_one", [lambda i=i: jobs.insert_one(document(i)) for i in single])
        await timed(
            f"insert_many({batch}, ordered=False)",
            [lambda g=g: jobs.insert_many([document(i) for i in g], ordered=False) for g in groups],
        )
        sent = {"$set": {"mail.succeeded.state": "sent", "mail.succeeded.sent_at": now}}
        await timed(
            "update_one (guarded)",
            [lambda i=i: jobs.update_one({"_id": i, "mail.succeeded.claim_id": i}, sent)
             for i in single],
        )  # fmt: skip
        await timed(
            f"update_many({batch}, $or of guards)",
            [lambda g=g: jobs.update_many(
                {"$or": [{"_id": i, "mail.succeeded.claim_id": i} for i in g]}, sent)
             for g in groups],
        )  # fmt: skip

        async def fresh_groups() -> list[list[str]]:  # claimed jobs nothing has marked yet
            ids = [uuid.uuid4().hex for _ in range(docs)]
            await jobs.insert_many([document(i) for i in ids], ordered=False)
            return [ids[i : i + batch] for i in range(0, docs, batch)]

        more_groups = await fresh_groups()
        await timed(
            f"update_many({batch}, _id $in + $or)",
            [lambda g=g: jobs.update_many(
                {"_id": {"$in": g}, "$or": [{"_id": i, "mail.succeeded.claim_id": i} for i in g]},
                sent)
             for g in more_groups],
        )  # fmt: skip
        last_groups = await fresh_groups()
        await timed(
            f"bulk_write({batch} UpdateOne, ordered=False)",
            [lambda g=g: jobs.bulk_write(
                [UpdateOne({"_id": i, "mail.succeeded.claim_id": i}, sent) for i in g],
                ordered=False)
             for g in last_groups],
        )  # fmt: skip
        changed = await jobs.count_documents({"mail.succeeded.state": "sent"})
        figures["documents changed (expect 4 x docs)"] = changed

        # The store's own guarded writes (jobplane.store.GuardedWrite): concurrent claims of
        # queued jobs, each with a token of its own, against a find_one_and_update each.
        async def queued_jobs() -> list[str]:
            ids = [uuid.uuid4().hex for _ in range(docs)]
            queued = [
                NewJob(i, "app", "user", "thumbnail", "{}", None, i).document(now, now) for i in ids
            ]
            await jobs.insert_many(queued, ordered=False)
            return ids

        deadline = now + timedelta(minutes=5)
        claim = {"attempt": 1, "status": {"$in": ["queued", "retry_scheduled"]}}
        alone = await queued_jobs()
        await timed(
            "find_one_and_update (a claim each)",
            [lambda i=i: jobs.find_one_and_update(
                {"_id": i, **claim},
                {"$set": {"status": "dispatched", "deadline_at": deadline,
                          "attempts.1.callback_token_hash": uuid.uuid4().hex}})
             for i in alone],
        )  # fmt: skip
        store = JobStore(client[database])
        shared = await queued_jobs()
        await timed(
            "JobStore.claim_attempt (batched)",
            [lambda i=i: store.claim_attempt(
                i, 1, callback_token_hash=uuid.uuid4().hex, deadline_at=deadline)
             for i in shared],
        )  # fmt: skip
        figures["claims won (expect 2 x docs)"] = await jobs.count_documents(
            {"status": "dispatched"}
        )
        return figures
    finally:
        await client.drop_database(database)
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("uri")
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    for name, value in asyncio.run(
        measure(args.uri, args.docs, args.batch, args.concurrency)
    ).items():
        print(f"{name:40} {value:10.0f} docs/s")


if __name__ == "__main__":
    main()
