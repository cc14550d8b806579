"""Group commit (jobplane.batching): concurrent calls share one command, each caller gets its
own outcome. The coalescer alone, then behind the store's job inserts and guarded writes
(state changes, mail claims and "sent" marks) on the real store: a duplicate Idempotency-Key
fails only its caller, a guard that matches nothing answers None to its caller only, two
writes of one job in one batch cannot both win, a store outage fails every caller of the
batch and a retry stores them all."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

import pytest
from jobplane.batching import Coalescer
from jobplane.events import Failure, FailureKind
from jobplane.jobs import Job, JobStatus
from jobplane.store import (
    GuardedWrite,
    JobStore,
    MailClaim,
    MailState,
    _batch_pipeline,
    _write_groups,
    utcnow,
)
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from tests.jobplane.test_store import new_job


class Recorder:
    """A run_batch that records its batches; an item "bad" fails alone, "boom" the batch."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    async def __call__(self, items: Sequence[str]) -> list[str | BaseException]:
        self.batches.append(list(items))
        await asyncio.sleep(0.01)
        if "boom" in items:
            raise ConnectionError("store unreachable")
        return [ValueError(item) if item == "bad" else item.upper() for item in items]


async def test_calls_during_a_command_go_out_together_each_with_its_own_answer() -> None:
    recorder = Recorder()
    coalescer: Coalescer[str, str] = Coalescer(recorder, max_batch=4)
    items = [f"i{n}" for n in range(9)]

    answers = await asyncio.gather(*(coalescer.submit(item) for item in items))

    assert answers == [item.upper() for item in items]
    # the first goes alone at once; the others waited for it and went in batches of 4
    assert recorder.batches == [["i0"], items[1:5], items[5:9]]


async def test_an_item_error_fails_its_caller_only_and_a_batch_error_fails_all() -> None:
    recorder = Recorder()
    coalescer: Coalescer[str, str] = Coalescer(recorder)

    first = await asyncio.gather(
        *(coalescer.submit(item) for item in ["a", "b", "bad", "c"]), return_exceptions=True
    )
    assert first[:2] == ["A", "B"] and first[3] == "C"
    assert isinstance(first[2], ValueError)

    second = await asyncio.gather(
        *(coalescer.submit(item) for item in ["x", "y", "boom", "z"]), return_exceptions=True
    )
    assert recorder.batches[-1] == ["y", "boom", "z"]
    assert second[0] == "X"
    assert all(isinstance(answer, ConnectionError) for answer in second[1:])
    # and it goes on: a retry is served
    assert await coalescer.submit("y") == "Y"


async def test_a_caller_that_gives_up_does_not_cancel_its_neighbours() -> None:
    recorder = Recorder()
    coalescer: Coalescer[str, str] = Coalescer(recorder)
    blocker = asyncio.create_task(coalescer.submit("first"))
    await asyncio.sleep(0)
    impatient = asyncio.create_task(coalescer.submit("impatient"))
    patient = asyncio.create_task(coalescer.submit("patient"))
    await asyncio.sleep(0)
    impatient.cancel()

    assert await patient == "PATIENT"
    assert await blocker == "FIRST"
    assert recorder.batches == [["first"], ["impatient", "patient"]]


async def test_concurrent_inserts_share_commands_and_a_duplicate_key_fails_only_its_caller(
    store: JobStore,
) -> None:
    earlier, _ = await store.create_job(new_job("earlier", idempotency_key="key-1"))
    jobs = [new_job(f"job-{n}") for n in range(40)]
    jobs[7] = new_job("job-7", idempotency_key="key-1")  # the app's key of "earlier"
    jobs[20] = new_job("job-3")  # a replayed request of job-3
    before = store._job_inserts.batches

    answers = await asyncio.gather(*(store.create_job(job) for job in jobs))

    assert store._job_inserts.batches - before < len(jobs) // 4  # shared commands
    assert answers[7] == (earlier, False)
    assert answers[20][0] == answers[3][0] and [answers[3][1], answers[20][1]].count(True) == 1
    created = [n for n, (_, new) in enumerate(answers) if new]
    assert len(created) == len(jobs) - 2
    for n in created:
        stored = await store.get_job(f"job-{n}")
        assert stored is not None and stored == answers[n][0]
    assert await store.get_job("job-7") is None


async def test_concurrent_sent_marks_change_each_job_under_its_own_claim(store: JobStore) -> None:
    stale = utcnow() - timedelta(hours=1)
    job_ids = [f"job-{n}" for n in range(30)]
    for job_id in job_ids:
        await store.create_job(new_job(job_id))
        claimed = await store.claim_user_mail(
            job_id, "succeeded", claim_id=f"claim-{job_id}", message_id="m", stale_before=stale
        )
        assert claimed is MailClaim.CLAIMED
    # a mark under a claim that is not (or no longer) ours changes nothing
    claim_ids = [f"claim-{job_id}" for job_id in job_ids]
    claim_ids[5] = "someone-else"
    claim_ids[17] = "someone-else"
    before = store._guarded_writes.batches

    answers = await asyncio.gather(
        *(
            store.settle_user_mail(job_id, "succeeded", MailState.SENT, claim_id=claim_id)
            for job_id, claim_id in zip(job_ids, claim_ids, strict=True)
        )
    )

    assert store._guarded_writes.batches - before < len(job_ids) // 4
    assert [n for n, ok in enumerate(answers) if not ok] == [5, 17]
    for n, job_id in enumerate(job_ids):
        doc = await store.jobs.find_one({"_id": job_id})
        assert doc is not None
        mail = doc["mail"]["succeeded"]
        if n in (5, 17):
            assert mail["state"] == "claimed" and "notified_user_at" not in doc
        else:
            assert mail["state"] == "sent" and doc["notified_user_at"] == mail["sent_at"]


async def test_a_store_outage_fails_every_caller_and_a_retry_stores_them(
    store: JobStore,
) -> None:
    # nothing listens on this port (the perf band): the store is down
    down: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
        "mongodb://127.0.0.1:27699/?serverSelectionTimeoutMS=300&connectTimeoutMS=300"
    )
    try:
        unreachable = JobStore(down[store.db.name])
        jobs = [new_job(f"job-{n}") for n in range(10)]
        answers = await asyncio.gather(
            *(unreachable.create_job(job) for job in jobs), return_exceptions=True
        )
        assert all(isinstance(answer, PyMongoError) for answer in answers)
        assert unreachable._job_inserts.batches == 2  # one alone, then the nine together
    finally:
        await down.close()

    retried = await asyncio.gather(*(store.create_job(job) for job in jobs))
    assert all(created for _, created in retried)


async def test_concurrent_claims_each_win_by_their_own_guard_and_token(store: JobStore) -> None:
    job_ids = [f"job-{n}" for n in range(30)]
    for job_id in job_ids:
        await store.create_job(new_job(job_id))
    deadline = utcnow() + timedelta(minutes=5)
    claims = [(job_id, 1, f"hash-{job_id}") for job_id in job_ids]
    claims[4] = ("job-4", 2, "hash-wrong-attempt")  # not the attempt that is due
    claims.append(("job-9", 1, "hash-job-9-again"))  # a duplicate event of job-9
    before = store._guarded_writes.batches

    answers = await asyncio.gather(
        *(
            store.claim_attempt(job_id, attempt, callback_token_hash=token, deadline_at=deadline)
            for job_id, attempt, token in claims
        )
    )

    assert store._guarded_writes.batches - before < len(claims) // 4  # shared commands
    won = {claims[n][2] for n, claimed in enumerate(answers) if claimed}
    assert "hash-wrong-attempt" not in won
    assert len({"hash-job-9", "hash-job-9-again"} & won) == 1  # one claim of job-9 wins
    for n, claimed in enumerate(answers):
        job_id, _, token = claims[n]
        if not claimed:
            continue
        # a caller told it won holds the claim with its own token
        stored = await store.jobs.find_one({"_id": job_id})
        assert stored is not None and stored["status"] == JobStatus.DISPATCHED.value
        assert stored is not None and stored["attempts"]["1"]["callback_token_hash"] == token
        assert "announce_due_at" not in stored
    still_queued = await store.get_job("job-4")
    assert still_queued is not None and still_queued.status is JobStatus.QUEUED


async def test_concurrent_outcomes_of_two_shapes_keep_each_jobs_own_values(
    store: JobStore,
) -> None:
    job_ids = [f"job-{n}" for n in range(20)]
    deadline = utcnow() + timedelta(minutes=5)
    for job_id in job_ids:
        await store.create_job(new_job(job_id))
        await store.claim_attempt(job_id, 1, callback_token_hash=job_id, deadline_at=deadline)
    failure = Failure(kind=FailureKind.REPORTED, message="$not.a.path", retryable=True)

    async def outcome(n: int) -> Job | None:
        if n % 2:
            return await store.report_failure(
                job_ids[n], 1, failure, callback_token_hash=job_ids[n]
            )
        # a result that looks like a field path stays a string
        return await store.complete(job_ids[n], 1, f"$result-{n}", callback_token_hash=job_ids[n])

    answers = await asyncio.gather(*(outcome(n) for n in range(20)))

    for n, job in enumerate(answers):
        # each caller's answer is its own job as written
        assert job is not None and job.job_id == job_ids[n]
        stored = await store.get_job(job_ids[n])
        assert stored is not None and job.updated_at == stored.updated_at
        report = stored.attempt_info(1)
        assert report is not None and report.report is not None
        if n % 2:
            assert report.report.status == "failed" and stored.status is JobStatus.DISPATCHED
        else:
            assert stored.status is JobStatus.SUCCEEDED and stored.result == f"$result-{n}"
    # the first report won: a second one of any shape changes nothing
    late = await store.complete(job_ids[1], 1, "late", callback_token_hash=job_ids[1])
    assert late is None


def test_writes_group_by_shape_with_each_job_once_per_group() -> None:
    def write(job_id: str, *fields: str) -> GuardedWrite:
        return GuardedWrite(job_id, {"_id": job_id}, dict.fromkeys(fields, 1))

    writes = [write("a", "x"), write("b", "x"), write("a", "x"), write("c", "y"), write("d", "x")]
    assert _write_groups(writes) == [[0, 1, 4], [2], [3]]


def test_a_batch_pipeline_sets_shared_values_once_and_others_per_document() -> None:
    writes = [
        GuardedWrite("a", {"_id": "a"}, {"status": "x", "token": "ta"}, ("due",)),
        GuardedWrite("b", {"_id": "b"}, {"status": "x", "token": "$tb"}, ("due",)),
    ]
    at = {"$indexOfArray": [{"$literal": ["a", "b"]}, "$_id"]}
    assert _batch_pipeline(writes, ["a", "b"], "w1") == [
        {
            "$set": {
                "write_id": {"$literal": "w1"},
                "status": {"$literal": "x"},
                "token": {"$arrayElemAt": [{"$literal": ["ta", "$tb"]}, at]},
            }
        },
        {"$unset": ["due"]},
    ]


@pytest.mark.parametrize("bad", [(0, 1), (1, 0)])
def test_sizes_are_checked(bad: tuple[int, int]) -> None:
    async def never(items: Sequence[int]) -> list[int]:
        raise AssertionError

    with pytest.raises(ValueError):
        Coalescer(never, max_batch=bad[0], max_in_flight=bad[1])
