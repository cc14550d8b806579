"""Single-document updates are atomic: the guard of every job state change depends on it.

Each job state change is one `find_one_and_update` whose filter is the state it starts from;
if two writers could both pass the same guard, an event would be acted on twice (a backend
called twice, a retry scheduled twice), and if an update could write back a stale copy of the
document, one writer's fields would vanish.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from tests.store.conftest import TRIALS, WRITERS

Document = dict[str, Any]


async def test_a_guarded_find_one_and_update_has_exactly_one_winner(
    jobs: AsyncCollection[Document],
) -> None:
    single_winner = 0
    for trial in range(TRIALS):
        job_id = f"race-{trial}"
        await jobs.insert_one({"_id": job_id, "status": "queued", "attempt": 1})

        async def claim(writer: int, job_id: str = job_id) -> Document | None:
            return await jobs.find_one_and_update(
                {"_id": job_id, "attempt": 1, "status": {"$in": ["queued", "retry_scheduled"]}},
                {"$set": {"status": "dispatched", "claimed_by": writer}},
                return_document=ReturnDocument.AFTER,
            )

        results = await asyncio.gather(*(claim(w) for w in range(WRITERS)))
        winners = [r for r in results if r is not None]
        stored = await jobs.find_one({"_id": job_id})
        assert stored is not None
        if len(winners) == 1 and stored["claimed_by"] == winners[0]["claimed_by"]:
            single_winner += 1
    assert single_winner == TRIALS, (
        f"only {single_winner} of {TRIALS} races of {WRITERS} guarded updates had exactly one"
        " winner: this server does not apply a guarded update atomically"
    )


async def test_concurrent_sets_of_different_fields_lose_nothing(
    jobs: AsyncCollection[Document],
) -> None:
    lossy = 0
    for trial in range(TRIALS):
        job_id = f"fields-{trial}"
        await jobs.insert_one({"_id": job_id, "status": "running"})
        await asyncio.gather(
            *(jobs.update_one({"_id": job_id}, {"$set": {f"field_{w}": w}}) for w in range(WRITERS))
        )
        stored = await jobs.find_one({"_id": job_id})
        assert stored is not None
        if any(stored.get(f"field_{w}") != w for w in range(WRITERS)):
            lossy += 1
    assert lossy == 0, f"concurrent $set of different fields lost fields in {lossy} of {TRIALS}"


async def test_concurrent_sets_through_find_one_and_update_lose_nothing(
    jobs: AsyncCollection[Document],
) -> None:
    # The shape of the services' writes: find_one_and_update with $set and $unset.
    await jobs.insert_one({"_id": "job", "announce_due_at": 1})
    await asyncio.gather(
        *(
            jobs.find_one_and_update(
                {"_id": "job"},
                {"$set": {f"attempts.{w}.report": {"status": "failed"}}, "$unset": {"x": ""}},
            )
            for w in range(WRITERS)
        )
    )
    stored = await jobs.find_one({"_id": "job"})
    assert stored is not None
    assert sorted(stored["attempts"]) == sorted(str(w) for w in range(WRITERS))


async def test_inc_loses_no_increment(jobs: AsyncCollection[Document]) -> None:
    per_writer = 50
    await jobs.insert_one({"_id": "counter", "n": 0})

    async def increment() -> None:
        for _ in range(per_writer):
            await jobs.update_one({"_id": "counter"}, {"$inc": {"n": 1}})

    await asyncio.gather(*(increment() for _ in range(WRITERS)))
    stored = await jobs.find_one({"_id": "counter"})
    assert stored is not None
    assert stored["n"] == WRITERS * per_writer
