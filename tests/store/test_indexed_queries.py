"""Every query the services run is served by an index, so its cost does not grow with the
job history. The queries are listed in `jobplane.indexes.QUERIES`.

Two checks, because a plan can claim more than the server does:
- where the server explains its plans, the winning plan scans an index, never the whole
  collection, and does not sort in memory what an index could have ordered;
- on every server, the query is timed on a small collection and again on one 200 times
  larger: an index lookup stays about as fast, a scan does not. (secantusd-rs 0.5.3 explains
  `{_id, $or: [...]}` as an index scan and then reads the whole collection: the timing
  caught it.)
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from jobplane import indexes
from jobplane.indexes import Query
from jobplane.store import JobStore
from jobplane_local.testing import Infra
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

Document = dict[str, Any]

SMALL, LARGE = 100, 20_000
RUNS = 25
# A scan of 200 times more documents costs far more than this; an index lookup does not.
MAX_SLOWDOWN = 5.0
# Below this, a difference is noise of a loaded machine, not a scan.
NOISE_SECONDS = 0.001
INDEX_STAGES = ("IXSCAN", "IDHACK", "EXPRESS_IXSCAN", "COUNT_SCAN", "DISTINCT_SCAN")
_OLD = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Measured:
    plan: Any | None  # the winning plan, None if the server does not explain
    small_seconds: float
    large_seconds: float


def _fillers(collection: str, start: int, stop: int) -> list[Document]:
    """Documents of the collection's usual shape that no catalogued example is: finished
    jobs, the bulk of a real job history."""
    if collection != indexes.JOBS:
        return [{"_id": f"filler-{i}", "job_id": f"filler-job-{i}"} for i in range(start, stop)]
    return [
        {
            "_id": f"filler-{i}",
            "app_id": f"filler-app-{i % 7}",
            "status": "succeeded",
            "attempt": 1,
            "attempts": {"1": {"report": {"status": "succeeded", "at": _OLD}}},
            "mail": {"succeeded": {"state": "sent", "claimed_at": _OLD}},
            "created_at": _OLD,
            "finished_at": _OLD,
        }
        for i in range(start, stop)
    ]


def _stages(plan: Any) -> Iterator[str]:
    """Every `stage` in an explained plan tree (classic and slot-based formats)."""
    if isinstance(plan, dict):
        stage = plan.get("stage")
        if isinstance(stage, str):
            yield stage
        for value in plan.values():
            yield from _stages(value)
    elif isinstance(plan, list):
        for item in plan:
            yield from _stages(item)


async def _winning_plan(db: AsyncDatabase[Document], query: Query) -> Any | None:
    command: Document = {"find": query.collection, "filter": query.filter}
    if query.sort:
        command["sort"] = dict(query.sort)
    try:
        explained = await db.command("explain", command, verbosity="queryPlanner")
    except OperationFailure:
        return None
    return explained.get("queryPlanner", {}).get("winningPlan")


async def _fastest_seconds(db: AsyncDatabase[Document], query: Query) -> float:
    """The slower of a find and a find_one_and_update with the filter (a server may plan a
    write differently from a read), each the fastest of RUNS: the least disturbed by other
    work on the machine, and a scan is never fast."""
    collection = db[query.collection]
    reads, writes = [], []
    for _ in range(RUNS):
        began = time.perf_counter()
        await collection.find(query.filter, sort=list(query.sort) or None).to_list()
        reads.append(time.perf_counter() - began)
        began = time.perf_counter()
        await collection.find_one_and_update(
            query.filter, {"$inc": {"conformance_probe": 1}}, sort=list(query.sort) or None
        )
        writes.append(time.perf_counter() - began)
    return max(min(reads), min(writes))


@pytest.fixture(scope="module")
async def measured(infra: Infra) -> AsyncIterator[dict[str, Measured]]:
    """Every catalogued query explained and timed, on a database with the job store's
    indexes, first with SMALL documents per collection, then with LARGE."""
    client: AsyncMongoClient[Document] = AsyncMongoClient(infra.mongodb_uri)
    db = client[f"test_{uuid.uuid4().hex[:8]}"]
    try:
        await JobStore(db).prepare()
        collections = {q.collection for q in indexes.QUERIES}
        for name in collections:
            await db[name].insert_many(_fillers(name, 0, SMALL))
        for query in indexes.QUERIES:
            if query.example:
                await db[query.collection].insert_one(query.example)
        plans = {q.name: await _winning_plan(db, q) for q in indexes.QUERIES}
        small = {q.name: await _fastest_seconds(db, q) for q in indexes.QUERIES}
        for name in collections:
            await db[name].insert_many(_fillers(name, SMALL, LARGE))
        yield {
            q.name: Measured(plans[q.name], small[q.name], await _fastest_seconds(db, q))
            for q in indexes.QUERIES
        }
    finally:
        await client.drop_database(db.name)
        await client.close()


@pytest.mark.parametrize("query", indexes.QUERIES, ids=lambda q: q.name.replace(" ", "-"))
async def test_the_query_is_served_by_an_index(measured: dict[str, Measured], query: Query) -> None:
    result = measured[query.name]
    if result.plan is not None:
        stages = list(_stages(result.plan))
        assert "COLLSCAN" not in stages, f"{query.name}: a collection scan, {result.plan}"
        assert any(s in INDEX_STAGES for s in stages), f"{query.name}: no index, {result.plan}"
        if query.sort:
            assert "SORT" not in stages, f"{query.name}: sorted in memory, not by an index"
    assert result.large_seconds < result.small_seconds * MAX_SLOWDOWN + NOISE_SECONDS, (
        f"{query.name}: {result.small_seconds * 1000:.2f} ms with {SMALL} documents,"
        f" {result.large_seconds * 1000:.2f} ms with {LARGE}: its cost grows with the data"
    )


async def test_each_query_finds_its_example(prepared_db: AsyncDatabase[Document]) -> None:
    """The catalogue's filters are the ones the store sends: each finds the document it is
    meant for (a filter nobody matches would be explained and timed for nothing)."""
    for query in indexes.QUERIES:
        if not query.example:
            continue
        collection = prepared_db[query.collection]
        await collection.insert_one(query.example)
        found = await collection.find_one(query.filter)
        assert found is not None, f"{query.name}: the filter does not match its example"
        await collection.delete_one({"_id": query.example["_id"]})


def test_every_collection_of_the_catalogue_is_known() -> None:
    known = {
        indexes.JOBS,
        indexes.APPS,
        indexes.USERS,
        indexes.NOTIFICATIONS,
        indexes.REDRIVE_REQUESTS,
    }
    assert {q.collection for q in indexes.QUERIES} <= known
    assert {i.collection for i in indexes.INDEXES} <= known
    assert len({q.name for q in indexes.QUERIES}) == len(indexes.QUERIES)
