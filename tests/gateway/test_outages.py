"""Store or Kafka unavailable: 503 with Retry-After, never a 500; a job stored while Kafka
is away is announced later by the outbox relay."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from jobplane.connections import Connections
from jobplane.events import JobRequested
from jobplane.kafka import KafkaError, Publisher, make_producer
from jobplane.store import JobStore, utcnow
from jobplane_gateway import publishing
from jobplane_gateway.config import Settings
from jobplane_gateway.main import create_app
from jobplane_gateway.relay import Relay
from pymongo import AsyncMongoClient

from tests.support import free_port

from .harness import ADMIN, BASE_URL, Gateway


@pytest.fixture
async def unreachable_store(conns: Connections) -> AsyncIterator[Connections]:
    """The gateway's connections with a store client pointed at a port nobody listens on."""
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
        f"mongodb://127.0.0.1:{free_port()}/?serverSelectionTimeoutMS=300&connectTimeoutMS=300"
    )
    try:
        yield dataclasses.replace(conns, store=JobStore(client["jobplane"]))
    finally:
        await client.close()


@pytest.fixture
async def unreachable_kafka(gateway: Gateway) -> AsyncIterator[Connections]:
    """The gateway's connections with a real producer that can no longer reach Kafka."""
    producer = make_producer(gateway.settings, client_id="gateway-test-dead")
    await producer.start()
    await producer.stop()
    yield dataclasses.replace(gateway.conns, publisher=Publisher(producer, gateway.conns.topics))


def client_of(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)


async def test_an_unreachable_store_is_503_with_retry_after_on_every_route(
    gateway: Gateway, unreachable_store: Connections
) -> None:
    app = await gateway.register_app()
    user_id = await gateway.register_user(app)
    job = await gateway.submitted_job(app)
    token = await gateway.dispatch(job.job_id, 1)
    async with client_of(create_app(gateway.settings, unreachable_store)) as http:
        responses = [
            await http.post(
                "/v1/jobs",
                json={"user_id": user_id, "job_type": "t", "payload": {}},
                headers=app.headers,
            ),
            await http.get(f"/v1/jobs/{job.job_id}", headers=app.headers),
            await http.put(
                f"/v1/users/{user_id}", json={"email": "a@example.com"}, headers=app.headers
            ),
            await http.post(
                "/v1/apps", json={"app_id": "x1", "backend_url": "http://b.test/"}, headers=ADMIN
            ),
            await http.post(
                f"/v1/jobs/{job.job_id}/result",
                json={"attempt": 1, "status": "succeeded", "result": 1},
                headers={"Authorization": f"Bearer {token}"},
            ),
            await http.get("/readyz"),
        ]
    for response in responses:
        assert response.status_code == 503, response.request.url
        assert (
            "unavailable" in response.json()["detail"] or "unreachable" in response.json()["detail"]
        )
    for response in responses[:-1]:
        assert response.headers["retry-after"] == str(gateway.settings.retry_after_seconds)
    stored = await gateway.conns.store.get_job(job.job_id)
    assert stored is not None
    assert stored.status.value == "running"


async def test_a_kafka_error_escaping_a_route_is_503_not_500(gateway: Gateway) -> None:
    app = create_app(gateway.settings, gateway.conns)

    @app.get("/kafka-down")
    async def kafka_down() -> None:
        raise KafkaError("broker not available")

    async with client_of(app) as http:
        response = await http.get("/kafka-down")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json() == {
        "detail": "the event bus is unavailable: retry the same request later"
    }


async def test_a_job_stored_while_kafka_is_away_is_accepted_and_relayed_later(
    gateway: Gateway, unreachable_kafka: Connections
) -> None:
    app = await gateway.register_app()
    user_id = await gateway.register_user(app)
    settings = gateway.settings.model_copy(update={"publish_timeout_seconds": 0.5})
    async with client_of(create_app(settings, unreachable_kafka)) as http:
        accepted = await http.post(
            "/v1/jobs",
            json={"user_id": user_id, "job_type": "thumbnail", "payload": {"photo": "p.jpg"}},
            headers=app.headers,
        )
        relayed_too_soon = await Relay(
            unreachable_kafka.store, unreachable_kafka.publisher, unreachable_kafka.topics, settings
        ).run_once()

    # Stored durably and owed: answering an error would make a client without an
    # Idempotency-Key submit the job twice.
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    store = gateway.conns.store
    job = await store.get_job(job_id)
    assert job is not None and job.announce_due_at is not None
    assert relayed_too_soon == 0  # within the grace: not owed yet
    assert await gateway.events(gateway.conns.topics.requested, JobRequested, job_id) == []

    # Kafka is back; the grace has passed (made so here by moving the due time back).
    await store.jobs.update_one(
        {"_id": job_id}, {"$set": {"announce_due_at": utcnow() - timedelta(seconds=1)}}
    )
    relay = Relay(store, gateway.conns.publisher, gateway.conns.topics, settings)
    assert await relay.run_once() == 1

    [event] = await gateway.wait_events(gateway.conns.topics.requested, JobRequested, job_id)
    assert (event.attempt, event.user_id, event.job_type) == (1, user_id, "thumbnail")
    assert event.payload == job.payload
    relayed = await store.get_job(job_id)
    assert relayed is not None and relayed.announce_due_at is not None
    # Owed again later (backoff), in case the dispatcher does not act on this one either.
    assert relayed.announce_due_at > utcnow() + timedelta(seconds=25)
    assert relayed.announce_relays == 1
    assert await relay.run_once() == 0


async def test_a_submit_is_answered_without_waiting_for_kafkas_ack(
    gateway: Gateway, unreachable_kafka: Connections, caplog: pytest.LogCaptureFixture
) -> None:
    app = await gateway.register_app()
    user_id = await gateway.register_user(app)
    settings = gateway.settings.model_copy(update={"publish_timeout_seconds": 3.0})
    async with client_of(create_app(settings, unreachable_kafka)) as http:
        began = time.monotonic()
        accepted = await http.post(
            "/v1/jobs",
            json={"user_id": user_id, "job_type": "thumbnail", "payload": {}},
            headers=app.headers,
        )
        answered_in = time.monotonic() - began
        assert accepted.status_code == 202, accepted.text
        # The job is durable and owed before the answer; the ack is awaited afterwards.
        job = await gateway.conns.store.get_job(accepted.json()["job_id"])
        assert job is not None and job.announce_due_at is not None
        assert answered_in < settings.publish_timeout_seconds
        await publishing.drain(10)  # the ack never comes: the wait gives up, and says so
    assert "event not acknowledged; the outbox relay will publish it" in caplog.text


def test_the_relay_backs_off_from_the_grace_to_a_cap(settings: Settings) -> None:
    relay = Relay.__new__(Relay)
    relay.grace = timedelta(seconds=30)
    relay.max_backoff = timedelta(seconds=600)
    assert [relay.backoff(n).total_seconds() for n in range(7)] == [
        30,
        60,
        120,
        240,
        480,
        600,
        600,
    ]
    assert relay.backoff(10_000) == timedelta(seconds=600)
