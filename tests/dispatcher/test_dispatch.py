"""The dispatch of job.requested events, against real Kafka, store and HTTP backends."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from jobplane.events import FailureKind, JobCompleted, JobFailed, JobRequested, utc_now
from jobplane.jobs import Job, JobStatus
from jobplane.security import hash_secret
from jobplane.store import App, JobStore, NewJob
from jobplane.topics import Topics
from jobplane.validation import MAX_TIMEOUT_SECONDS
from jobplane_dispatcher.config import Settings
from jobplane_dispatcher.dispatch import (
    CLAIM_LEAD,
    Claim,
    attempt_timeout_seconds,
    backend_body,
    not_before,
    not_before_problem,
)
from jobplane_dispatcher.main import serve
from starlette.responses import JSONResponse, PlainTextResponse, Response

from tests.support import job_requested, running

from .conftest import Kafka, register_app
from .http_stub import StubBackend, refusing_url, stub_backend

# -- pure parts ------------------------------------------------------------------------


def test_backend_body_is_the_contract_body() -> None:
    event = job_requested("app-1", "job-1", payload={"a": 1}, attempt=2)
    deadline = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    body = backend_body(
        event,
        {"a": 1},
        callback_url="http://gw/v1/jobs/job-1/result",
        callback_token="tok",
        deadline=deadline,
    )
    assert body == {
        "job_id": "job-1",
        "app_id": "app-1",
        "user_id": "user-1",
        "attempt": 2,
        "job_type": "thumbnail",
        "payload": {"a": 1},
        "callback_url": "http://gw/v1/jobs/job-1/result",
        "callback_token": "tok",
        "deadline": "2030-01-02T03:04:05Z",
    }


def test_a_retry_is_handed_over_a_claim_lead_before_it_is_due() -> None:
    event = job_requested("app-1", "job-lead")
    due = utc_now() + timedelta(seconds=5)
    assert not_before(event) is None  # at once
    assert not_before(dataclasses.replace(event, not_before=due)) == due - CLAIM_LEAD
    # Within the lead when handled: claimed now, called when due; not a problem.
    soon = dataclasses.replace(event, not_before=utc_now() + CLAIM_LEAD / 2)
    assert not_before_problem(soon) is None


def test_a_claim_ahead_of_a_retry_starts_its_deadline_when_due() -> None:
    due = utc_now() + timedelta(seconds=2)
    claim = Claim.new(60, due)
    assert claim.dispatched_at == due
    assert claim.deadline == due + timedelta(seconds=60)
    now_claim = Claim.new(60, utc_now() - timedelta(seconds=1))  # due already: from now
    assert now_claim.dispatched_at >= due - timedelta(seconds=2)  # now, not the past due time
    assert now_claim.deadline == now_claim.dispatched_at + timedelta(seconds=60)


def test_a_not_before_still_ahead_when_handled_is_rejected_never_called_early() -> None:
    """Just past the bound when it came, the event loop did not wait for it; a moment
    later it is within the bound, and must still not be dispatched before its time."""
    event = job_requested("a", "j")
    past = dataclasses.replace(event, not_before=utc_now() - timedelta(seconds=1))
    within = dataclasses.replace(event, not_before=utc_now() + timedelta(seconds=30))
    beyond = dataclasses.replace(event, not_before=utc_now() + timedelta(hours=1))
    assert not_before_problem(event) is None
    assert not_before_problem(past) is None
    assert (problem := not_before_problem(within)) is not None
    assert problem.startswith("not_before was more than 60 s ahead when the request came")
    assert (problem := not_before_problem(beyond)) is not None
    assert problem.startswith("not_before is 3600 s ahead")


def test_the_timeout_comes_from_the_request_then_the_app() -> None:
    app = App(
        app_id="a",
        backend_url="http://x",
        default_timeout_seconds=3600,
        admin_emails=[],
        api_key_hash="",
        max_concurrency=1,
        created_at=datetime.now(UTC),
    )
    assert attempt_timeout_seconds(job_requested("a", "j", timeout_seconds=5), app) == 5
    assert attempt_timeout_seconds(job_requested("a", "j"), app) == 3600


def test_an_apps_default_timeout_out_of_range_is_clamped() -> None:
    app = App(
        app_id="a",
        backend_url="http://x",
        default_timeout_seconds=10**12,  # stored before the gateway bounded it
        admin_emails=[],
        api_key_hash="",
        max_concurrency=1,
        created_at=datetime.now(UTC),
    )
    assert attempt_timeout_seconds(job_requested("a", "j"), app) == MAX_TIMEOUT_SECONDS


# -- the service, end to end over real servers ------------------------------------------


async def wait_for_job(
    store: JobStore, job_id: str, status: JobStatus, timeout: float = 30.0
) -> Job:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        job = await store.get_job(job_id)
        if job is not None and job.status is status:
            return job
        if loop.time() > deadline:
            raise AssertionError(f"job {job_id} is {job and job.status}, expected {status}")
        await asyncio.sleep(0.05)


def failed_of(job_id: str) -> Any:
    return lambda events: any(e.job_id == job_id for e in events)


pytestmark = pytest.mark.timeout(120)


async def test_accepted_dispatch_sends_the_contract_body_and_marks_the_job_running(
    settings: Settings, store: JobStore, kafka: Kafka, backend: StubBackend, dispatcher: None
) -> None:
    await register_app(store, "app-ok", backend.url, default_timeout_seconds=600)
    event = job_requested("app-ok", "job-ok", payload={"size": [32, 32]})
    before = datetime.now(UTC)
    await kafka.produce(kafka.topics.requested, event)

    job = await wait_for_job(store, "job-ok", JobStatus.RUNNING)

    (call,) = backend.calls
    body = call.body
    assert call.headers["x-trace-id"] == event.trace_id
    assert {k: body[k] for k in ("job_id", "app_id", "user_id", "attempt", "job_type")} == {
        "job_id": "job-ok",
        "app_id": "app-ok",
        "user_id": "user-1",
        "attempt": 1,
        "job_type": "thumbnail",
    }
    assert body["payload"] == {"size": [32, 32]}
    assert body["callback_url"] == "http://gateway.test:8000/v1/jobs/job-ok/result"
    deadline = datetime.fromisoformat(body["deadline"].replace("Z", "+00:00"))
    assert before + timedelta(seconds=599) < deadline < datetime.now(UTC) + timedelta(seconds=601)
    assert len(body["callback_token"]) >= 40
    # The store keeps only the token's hash, per attempt.
    (attempt,) = job.attempts
    assert attempt.number == 1
    assert attempt.callback_token_hash == hash_secret(body["callback_token"])
    assert attempt.accepted_at is not None
    assert job.deadline_at is not None
    assert abs((job.deadline_at - deadline).total_seconds()) < 0.01
    assert body["callback_token"] not in json.dumps(
        await store.jobs.find_one({"_id": "job-ok"}), default=str
    )


async def test_a_job_produced_directly_by_an_app_is_created(
    settings: Settings, store: JobStore, kafka: Kafka, backend: StubBackend, dispatcher: None
) -> None:
    await register_app(store, "app-direct", backend.url)
    await kafka.produce(kafka.topics.requested, job_requested("app-direct", "job-direct"))
    job = await wait_for_job(store, "job-direct", JobStatus.RUNNING)
    assert (job.app_id, job.user_id, job.job_type, job.attempt) == (
        "app-direct",
        "user-1",
        "thumbnail",
        1,
    )


async def test_a_request_with_not_before_is_dispatched_then_not_earlier(
    settings: Settings, store: JobStore, kafka: Kafka, backend: StubBackend, dispatcher: None
) -> None:
    """A retry arrives ahead of its due time (the retry service's release lead); the
    attempt is claimed and the backend called at ``not_before``, not when it arrives."""
    await register_app(store, "app-later", backend.url)
    soon = utc_now() + timedelta(seconds=3)
    due = soon.replace(microsecond=soon.microsecond // 1000 * 1000)  # as Avro keeps it
    event = dataclasses.replace(job_requested("app-later", "job-later"), not_before=due)
    await kafka.produce(kafka.topics.requested, event)
    # By then the dispatcher has long had the event (a busy CI machine included).
    await asyncio.sleep(max(0.0, (due - utc_now()).total_seconds() - 0.5))
    assert utc_now() < due
    assert backend.calls_for("job-later") == []
    job = await wait_for_job(store, "job-later", JobStatus.RUNNING)
    (attempt,) = job.attempts
    # Claimed a moment ahead (CLAIM_LEAD), recorded and called at its due time, never before.
    assert attempt.dispatched_at is not None and attempt.dispatched_at >= due
    (call,) = backend.calls_for("job-later")
    assert call.received_at >= due


async def test_refused_connection_is_reported_unreachable(
    settings: Settings, store: JobStore, kafka: Kafka, dispatcher: None
) -> None:
    async with refusing_url() as url:
        await register_app(store, "app-down", url)
        event = job_requested("app-down", "job-down", timeout_seconds=120)
        await kafka.produce(kafka.topics.requested, event)
        (failed,) = await kafka.read(kafka.topics.failed, JobFailed, until=failed_of("job-down"))
    assert failed.failure.kind is FailureKind.UNREACHABLE
    assert failed.failure.retryable is True
    assert (failed.job_id, failed.app_id, failed.user_id, failed.attempt) == (
        "job-down",
        "app-down",
        "user-1",
        1,
    )
    assert (failed.job_type, failed.payload, failed.timeout_seconds) == (
        event.job_type,
        event.payload,
        120,
    )
    assert failed.trace_id == event.trace_id
    # The retry service decides what happens next: the dispatcher leaves the status alone,
    # but the failure is the attempt's report, stored before it was published: no deadline
    # left (the sweeper cannot time it out too) and job.failed owed (the relay's outbox).
    doc = await store.jobs.find_one({"_id": "job-down"})
    assert doc is not None
    assert doc["status"] == JobStatus.DISPATCHED.value
    report = doc["attempts"]["1"]["report"]
    assert report["status"] == "failed"
    assert report["error"]["kind"] == "unreachable"
    assert "deadline_at" not in doc
    assert doc["announce_due_at"] > report["at"]


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (503, True), (404, False)])
async def test_http_errors_are_reported_with_their_status(
    settings: Settings,
    store: JobStore,
    kafka: Kafka,
    dispatcher: None,
    status: int,
    retryable: bool,
) -> None:
    async def answer(_: dict[str, Any]) -> Response:
        return PlainTextResponse("nope", status_code=status)

    async with stub_backend(answer) as stub:
        await register_app(store, "app-err", stub.url)
        await kafka.produce(kafka.topics.requested, job_requested("app-err", "job-err"))
        (failed,) = await kafka.read(kafka.topics.failed, JobFailed, until=failed_of("job-err"))
    assert failed.failure.kind is FailureKind.HTTP_STATUS
    assert failed.failure.http_status == status
    assert failed.failure.retryable is retryable


async def test_a_failure_reported_in_the_answer_is_published(
    settings: Settings, store: JobStore, kafka: Kafka, dispatcher: None
) -> None:
    async def answer(_: dict[str, Any]) -> Response:
        body = {"status": "failed", "error": {"message": "bad video", "retryable": False}}
        return JSONResponse(body, status_code=200)

    async with stub_backend(answer) as stub:
        await register_app(store, "app-rep", stub.url)
        await kafka.produce(kafka.topics.requested, job_requested("app-rep", "job-rep"))
        (failed,) = await kafka.read(kafka.topics.failed, JobFailed, until=failed_of("job-rep"))
    assert failed.failure.kind is FailureKind.REPORTED
    assert (failed.failure.message, failed.failure.retryable) == ("bad video", False)


async def test_a_result_at_once_completes_the_job(
    settings: Settings, store: JobStore, kafka: Kafka, dispatcher: None
) -> None:
    async def answer(_: dict[str, Any]) -> Response:
        return JSONResponse({"status": "succeeded", "result": {"pages": 3}}, status_code=200)

    async with stub_backend(answer) as stub:
        await register_app(store, "app-now", stub.url)
        event = job_requested("app-now", "job-now")
        await kafka.produce(kafka.topics.requested, event)
        (completed,) = await kafka.read(
            kafka.topics.completed, JobCompleted, until=failed_of("job-now")
        )
    assert json.loads(completed.result) == {"pages": 3}
    assert (completed.attempt, completed.trace_id, completed.job_type) == (
        1,
        event.trace_id,
        "thumbnail",
    )
    job = await store.get_job("job-now")
    assert job is not None
    assert job.status is JobStatus.SUCCEEDED
    assert job.result is not None
    assert json.loads(job.result) == {"pages": 3}
    doc = await store.jobs.find_one({"_id": "job-now"})
    assert doc is not None
    assert doc["attempts"]["1"]["report"]["status"] == "succeeded"
    assert "deadline_at" not in doc and "announce_due_at" in doc


async def test_a_result_at_once_too_large_to_announce_fails_the_attempt_for_good(
    settings: Settings, store: JobStore, kafka: Kafka, dispatcher: None
) -> None:
    big = "x" * (settings.max_result_bytes + 1)

    async def answer(_: dict[str, Any]) -> Response:
        return JSONResponse({"status": "succeeded", "result": big}, status_code=200)

    async with stub_backend(answer) as stub:
        await register_app(store, "app-big", stub.url)
        await kafka.produce(kafka.topics.requested, job_requested("app-big", "job-big"))
        (failed,) = await kafka.read(kafka.topics.failed, JobFailed, until=failed_of("job-big"))
    assert failed.failure.kind is FailureKind.REJECTED
    assert failed.failure.retryable is False
    assert "MAX_RESULT_BYTES" in failed.failure.message
    job = await store.get_job("job-big")
    assert job is not None
    assert job.status is not JobStatus.SUCCEEDED and job.result is None


async def test_a_replay_of_a_finished_attempt_announces_nothing(
    settings: Settings, store: JobStore, kafka: Kafka, dispatcher: None
) -> None:
    async def answer(_: dict[str, Any]) -> Response:
        return JSONResponse({"status": "succeeded", "result": 1}, status_code=200)

    async with stub_backend(answer) as stub:
        await register_app(store, "app-again", stub.url)
        event = job_requested("app-again", "job-again")
        await kafka.produce(kafka.topics.requested, event)
        await wait_for_job(store, "job-again", JobStatus.SUCCEEDED)
        await kafka.produce(kafka.topics.requested, event)  # a replay
        await kafka.wait_committed(kafka.topics.requested, 2)
        completed = await kafka.read(
            kafka.topics.completed, JobCompleted, until=failed_of("job-again"), settle=1.0
        )
    # The stored result is announced once; the relay, not a replay, covers a lost publish.
    assert len(completed) == 1
    assert len(stub.calls) == 1


async def test_a_claim_whose_dispatcher_died_is_dispatched_on_replay(
    settings: Settings, store: JobStore, kafka: Kafka, backend: StubBackend, dispatcher: None
) -> None:
    await register_app(store, "app-crash", backend.url)
    event = job_requested("app-crash", "job-crash")
    await store.create_job(
        NewJob(
            job_id=event.job_id,
            app_id=event.app_id,
            user_id=event.user_id,
            job_type=event.job_type,
            payload=event.payload,
            timeout_seconds=None,
            trace_id=event.trace_id,
        )
    )
    # A dispatcher claimed the attempt, then died before calling the backend.
    lost = await store.claim_attempt(
        event.job_id,
        1,
        callback_token_hash="lost",
        deadline_at=datetime.now(UTC) + timedelta(hours=1),
    )
    assert lost
    await kafka.produce(kafka.topics.requested, event)  # the uncommitted event, replayed

    job = await wait_for_job(store, event.job_id, JobStatus.RUNNING)
    (call,) = backend.calls_for(event.job_id)
    assert call.body["attempt"] == 1
    (attempt,) = job.attempts
    assert attempt.callback_token_hash == hash_secret(call.body["callback_token"]) != "lost"


async def test_a_claim_in_flight_is_not_taken_over(
    settings: Settings, store: JobStore, kafka: Kafka, topics: Topics
) -> None:
    async def slow(_: dict[str, Any]) -> Response:
        await asyncio.sleep(1.5)
        return JSONResponse({"accepted": True}, status_code=202)

    # The default lease: longer than any call can take.
    patient = settings.model_copy(update={"claim_lease_seconds": None})
    async with stub_backend(slow) as stub, running(serve(patient)):
        await register_app(store, "app-busy", stub.url)
        event = job_requested("app-busy", "job-busy")
        await kafka.produce(kafka.topics.requested, event)
        await wait_for_job(store, "job-busy", JobStatus.DISPATCHED)
        await kafka.produce(kafka.topics.requested, event)  # a duplicate, mid-call
        job = await wait_for_job(store, "job-busy", JobStatus.RUNNING)
        await kafka.wait_committed(kafka.topics.requested, 2)
    (call,) = stub.calls
    (attempt,) = job.attempts
    assert attempt.callback_token_hash == hash_secret(call.body["callback_token"])


async def test_an_unknown_app_is_rejected(
    settings: Settings, store: JobStore, kafka: Kafka, backend: StubBackend, dispatcher: None
) -> None:
    await kafka.produce(kafka.topics.requested, job_requested("app-nobody", "job-nobody"))
    (failed,) = await kafka.read(kafka.topics.failed, JobFailed, until=failed_of("job-nobody"))
    assert failed.failure.kind is FailureKind.REJECTED
    assert failed.failure.retryable is False
    assert "app-nobody" in failed.failure.message
    assert backend.calls == []
    assert await store.get_job("job-nobody") is None


@pytest.mark.parametrize("payload", ["{not json", '{"score": NaN}', '{"name": "\\ud800"}'])
async def test_a_payload_that_is_not_json_is_rejected(
    settings: Settings,
    store: JobStore,
    kafka: Kafka,
    backend: StubBackend,
    dispatcher: None,
    payload: str,
) -> None:
    await register_app(store, "app-junk", backend.url)
    good = job_requested("app-junk", "job-junk")
    junk = JobRequested(
        job_id=good.job_id,
        app_id=good.app_id,
        user_id=good.user_id,
        attempt=1,
        trace_id=good.trace_id,
        job_type=good.job_type,
        payload=payload,
    )
    await kafka.produce(kafka.topics.requested, junk)
    (failed,) = await kafka.read(kafka.topics.failed, JobFailed, until=failed_of("job-junk"))
    assert "payload is not valid JSON" in failed.failure.message
    assert failed.failure.kind is FailureKind.REJECTED
    assert failed.failure.retryable is False
    assert backend.calls == []


async def test_a_direct_job_of_an_unregistered_user_is_rejected(
    settings: Settings, store: JobStore, kafka: Kafka, backend: StubBackend, dispatcher: None
) -> None:
    await register_app(store, "app-nouser", backend.url, users=())
    await kafka.produce(kafka.topics.requested, job_requested("app-nouser", "job-nouser"))
    (failed,) = await kafka.read(kafka.topics.failed, JobFailed, until=failed_of("job-nouser"))
    assert failed.failure.kind is FailureKind.REJECTED
    assert failed.failure.retryable is False
    assert "user-1" in failed.failure.message and "not registered" in failed.failure.message
    assert backend.calls == []
    assert await store.get_job("job-nouser") is None


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"job_id": "job\x1cbad"}, "job id"),
        ({"user_id": "user 1"}, "user id"),
        ({"job_type": "thumb\x1cnail"}, "job type"),
        ({"timeout_seconds": 2**31 - 1}, "timeout"),
        ({"timeout_seconds": 0}, "timeout"),
        # Held in memory until then: only a retry's short lead is taken, not a schedule.
        ({"not_before": utc_now() + timedelta(hours=1)}, "not_before"),
    ],
)
async def test_a_request_the_gateway_would_refuse_is_rejected(
    settings: Settings,
    store: JobStore,
    kafka: Kafka,
    backend: StubBackend,
    dispatcher: None,
    change: dict[str, Any],
    problem: str,
) -> None:
    await register_app(store, "app-bad", backend.url, users=("user-1", "user 1"))
    event = dataclasses.replace(job_requested("app-bad", "job-bad"), **change)
    await kafka.produce(kafka.topics.requested, event)
    (failed,) = await kafka.read(kafka.topics.failed, JobFailed, until=failed_of(event.job_id))
    assert failed.failure.kind is FailureKind.REJECTED
    assert failed.failure.retryable is False
    assert failed.failure.message.startswith(problem)
    assert backend.calls == []


async def test_an_apps_huge_default_timeout_does_not_stop_dispatch(
    settings: Settings, store: JobStore, kafka: Kafka, backend: StubBackend, dispatcher: None
) -> None:
    await register_app(store, "app-huge", backend.url, default_timeout_seconds=1e12)
    await kafka.produce(kafka.topics.requested, job_requested("app-huge", "job-huge"))
    job = await wait_for_job(store, "job-huge", JobStatus.RUNNING)
    assert job.deadline_at is not None
    assert job.deadline_at < datetime.now(UTC) + timedelta(seconds=MAX_TIMEOUT_SECONDS + 60)


async def test_a_duplicate_request_calls_the_backend_once(
    settings: Settings, store: JobStore, kafka: Kafka, backend: StubBackend, dispatcher: None
) -> None:
    await register_app(store, "app-dup", backend.url)
    event = job_requested("app-dup", "job-dup")
    await kafka.produce(kafka.topics.requested, event, event, event)
    await kafka.wait_committed(kafka.topics.requested, 3)
    await wait_for_job(store, "job-dup", JobStatus.RUNNING)
    assert len(backend.calls_for("job-dup")) == 1


async def test_a_stale_attempt_is_skipped(
    settings: Settings, store: JobStore, kafka: Kafka, backend: StubBackend, dispatcher: None
) -> None:
    await register_app(store, "app-stale", backend.url)
    await kafka.produce(kafka.topics.requested, job_requested("app-stale", "job-stale"))
    await wait_for_job(store, "job-stale", JobStatus.RUNNING)
    # Attempt 2 is not due (the job never failed): nothing happens.
    await kafka.produce(kafka.topics.requested, job_requested("app-stale", "job-stale", attempt=2))
    await kafka.wait_committed(kafka.topics.requested, 2)
    assert [c.body["attempt"] for c in backend.calls_for("job-stale")] == [1]


async def test_a_due_retry_is_dispatched_with_a_new_token(
    settings: Settings, store: JobStore, kafka: Kafka, backend: StubBackend, dispatcher: None
) -> None:
    await register_app(store, "app-retry", backend.url)
    await kafka.produce(kafka.topics.requested, job_requested("app-retry", "job-retry"))
    job = await wait_for_job(store, "job-retry", JobStatus.RUNNING)
    # What the retry service does when attempt 1 failed:
    from jobplane.events import Failure

    failure = Failure(kind=FailureKind.REPORTED, message="x", retryable=True)
    assert await store.schedule_retry(job.job_id, 1, failure, datetime.now(UTC)) is not None
    await kafka.produce(kafka.topics.requested, job_requested("app-retry", "job-retry", attempt=2))
    job = await wait_for_job(store, "job-retry", JobStatus.RUNNING)
    first, second = backend.calls_for("job-retry")
    assert (first.body["attempt"], second.body["attempt"]) == (1, 2)
    assert first.body["callback_token"] != second.body["callback_token"]
    assert job.attempt == 2
    assert [a.callback_token_hash for a in job.attempts] == [
        hash_secret(first.body["callback_token"]),
        hash_secret(second.body["callback_token"]),
    ]


async def test_many_dispatches_run_at_once_within_each_apps_limit(
    settings: Settings, store: JobStore, kafka: Kafka, dispatcher: None
) -> None:
    async def slow(_: dict[str, Any]) -> Response:
        await asyncio.sleep(0.5)
        return JSONResponse({"accepted": True}, status_code=202)

    async with stub_backend(slow) as stub:
        await register_app(store, "app-x", stub.url, max_concurrency=5)
        await register_app(store, "app-y", stub.url, max_concurrency=5)
        events = [
            job_requested(app_id, f"job-{app_id}-{n}")
            for n in range(10)
            for app_id in ("app-x", "app-y")
        ]
        await kafka.produce(kafka.topics.requested, *events)
        for event in events:
            await wait_for_job(store, event.job_id, JobStatus.RUNNING)
    assert len(stub.calls) == 20
    # Both apps' limits were reached, never passed; the two apps ran side by side.
    assert stub.max_in_flight_by_app == {"app-x": 5, "app-y": 5}
    assert stub.max_in_flight > 5
