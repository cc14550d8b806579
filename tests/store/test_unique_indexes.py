"""Unique indexes hold under concurrent inserts: a job id, an Idempotency-Key and a
notification key each decide one winner among writers that race."""

from __future__ import annotations

import asyncio
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from tests.store.conftest import TRIALS, WRITERS

Document = dict[str, Any]


async def _inserted(collection: AsyncCollection[Document], doc: Document) -> bool:
    try:
        await collection.insert_one(doc)
    except DuplicateKeyError:
        return False
    return True


async def test_concurrent_inserts_of_one_id_have_one_winner(
    prepared_db: AsyncDatabase[Document],
) -> None:
    notifications = prepared_db["notifications"]
    for trial in range(TRIALS):
        key = f"job-{trial}:dead:admin@example.com"
        results = await asyncio.gather(
            *(_inserted(notifications, {"_id": key, "writer": w}) for w in range(WRITERS))
        )
        assert sum(results) == 1
    assert await notifications.count_documents({}) == TRIALS


async def test_the_idempotency_key_index_is_unique_per_app_and_only_where_a_key_exists(
    jobs: AsyncCollection[Document],
) -> None:
    for trial in range(TRIALS):
        results = await asyncio.gather(
            *(
                _inserted(
                    jobs,
                    {"_id": f"job-{trial}-{w}", "app_id": "app-1", "idempotency_key": f"k{trial}"},
                )
                for w in range(WRITERS)
            )
        )
        assert sum(results) == 1, f"trial {trial}: {sum(results)} jobs stored for one key"

    # The same key in another app is another job.
    assert await _inserted(jobs, {"_id": "other-app", "app_id": "app-2", "idempotency_key": "k0"})
    # Jobs submitted without a key are not in the index: any number of them.
    results = await asyncio.gather(
        *(_inserted(jobs, {"_id": f"no-key-{w}", "app_id": "app-1"}) for w in range(WRITERS))
    )
    assert all(results)
    assert await jobs.count_documents({"app_id": "app-1"}) == TRIALS + WRITERS
