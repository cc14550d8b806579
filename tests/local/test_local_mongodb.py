"""The local FerretDB speaks MongoDB's protocol, unique indexes included."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError


async def test_unique_index_rejects_duplicates(mongo_db: AsyncDatabase[dict[str, Any]]) -> None:
    jobs = mongo_db["jobs"]
    await jobs.create_index("idempotency_key", unique=True)
    await jobs.insert_one({"idempotency_key": "k1", "status": "queued"})
    with pytest.raises(DuplicateKeyError):
        await jobs.insert_one({"idempotency_key": "k1", "status": "queued"})

    assert await jobs.count_documents({}) == 1
    found = await jobs.find_one({"idempotency_key": "k1"})
    assert found is not None
    assert found["status"] == "queued"
