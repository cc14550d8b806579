"""A multi-document transaction commits whole or rolls back whole (the server must run as a
replica set, as the local store does and as docker-compose's MongoDB does)."""

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
