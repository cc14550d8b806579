"""The store conformance suite: what Jobplane needs from the server `MONGODB_URI` names.

Run it against any server before pointing Jobplane at it:

    MONGODB_URI=mongodb://host:27017/ uv run pytest tests/store

Each test says which guarantee of the job store it stands for. The local store (secantusd-rs)
was chosen because it passes all of them; FerretDB 1.24 failed the atomic updates and the
indexed queries.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from jobplane.store import JobStore
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]

# Concurrent writers per race and races per property: enough that a server which applies an
# update as read-modify-write shows it (FerretDB 1.24 lost 31 of 50 such races).
WRITERS = 8
TRIALS = 20


@pytest.fixture
async def prepared_db(mongo_db: AsyncDatabase[Document]) -> AsyncIterator[AsyncDatabase[Document]]:
    """The per-test database with every index the job store creates at start-up."""
    await JobStore(mongo_db).prepare()
    yield mongo_db


@pytest.fixture
def jobs(prepared_db: AsyncDatabase[Document]) -> AsyncCollection[Document]:
    return prepared_db["jobs"]
