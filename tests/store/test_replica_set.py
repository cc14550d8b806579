"""A multi-document transaction commits whole or rolls back whole, and change streams work:
the server runs as a replica set, as the local store does and as docker-compose's MongoDB
does."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]


class _AbortError(Exception):
    pass


async def test_a_committed_transaction_is_seen_whole(
    mongo_client: AsyncMongoClient[Document], prepared_db: AsyncDatabase[Document]
) -> None:
    jobs, notifications = prepared_db["jobs"], prepared_db["notifications"]
    await jobs.insert_one({"_id": "job", "status": "running"})
    async with mongo_client.start_session() as session, await session.start_transaction():
        await jobs.update_one({"_id": "job"}, {"$set": {"status": "succeeded"}}, session=session)
        await notifications.insert_one({"_id": "job:succeeded", "job_id": "job"}, session=session)
        # Not visible outside the transaction before it commits.
        outside = await jobs.find_one({"_id": "job"})
        assert outside is not None
        assert outside["status"] == "running"
        assert await notifications.count_documents({}) == 0

    stored = await jobs.find_one({"_id": "job"})
    assert stored is not None
    assert stored["status"] == "succeeded"
    assert await notifications.count_documents({"job_id": "job"}) == 1


async def test_an_aborted_transaction_leaves_nothing(
    mongo_client: AsyncMongoClient[Document], prepared_db: AsyncDatabase[Document]
) -> None:
    jobs, notifications = prepared_db["jobs"], prepared_db["notifications"]
    await jobs.insert_one({"_id": "job", "status": "running"})
    with pytest.raises(_AbortError):
        async with mongo_client.start_session() as session, await session.start_transaction():
            await jobs.update_one({"_id": "job"}, {"$set": {"status": "dead"}}, session=session)
            await notifications.insert_one({"_id": "job:dead", "job_id": "job"}, session=session)
            raise _AbortError

    stored = await jobs.find_one({"_id": "job"})
    assert stored is not None
    assert stored["status"] == "running"
    assert await notifications.count_documents({}) == 0


async def test_a_change_stream_sees_a_committed_change(
    prepared_db: AsyncDatabase[Document],
) -> None:
    """Change streams need a replica set too; a server that offers them is one."""
    jobs = prepared_db["jobs"]
    async with await jobs.watch(max_await_time_ms=500) as stream:
        await jobs.insert_one({"_id": "job", "status": "queued"})
        change = None
        for _ in range(20):
            change = await stream.try_next()
            if change is not None:
                break
    assert change is not None
    assert change["operationType"] == "insert"
    assert change["documentKey"] == {"_id": "job"}
