from __future__ import annotations

import asyncio
import socket
import uuid
from datetime import timedelta

import httpx
import pytest
from jobplane.connections import Connections
from jobplane.events import JobRequested
from jobplane.store import NewJob, utcnow
from jobplane_gateway.config import Settings
from jobplane_gateway.main import create_app, serve

from tests.support import free_port, read_events

from .harness import ADMIN


async def test_serve_answers_over_http_until_cancelled(settings: Settings) -> None:
    port = free_port()
    task = asyncio.create_task(serve(settings.model_copy(update={"port": port})))
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=url, timeout=5) as http:
        for _ in range(100):
            assert not task.done(), task.exception()
            try:
                response = await http.get("/readyz")
                break
            except httpx.TransportError:
                await asyncio.sleep(0.1)
        assert response.status_code == 200
        created = await http.post(
            "/v1/apps", json={"app_id": "served", "backend_url": "http://b.test/"}, headers=ADMIN
        )
        assert created.status_code == 201

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(httpx.TransportError):
        await httpx.AsyncClient(base_url=url).get("/healthz")


async def test_serve_fails_loudly_when_the_port_is_taken(settings: Settings) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError):
            await serve(settings.model_copy(update={"port": port}))


async def test_without_connections_the_lifespan_opens_them(settings: Settings) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            assert (await http.get("/readyz")).status_code == 200
            created = await http.post(
                "/v1/apps",
                json={"app_id": "lifespan", "backend_url": "http://b.test/"},
                headers=ADMIN,
            )
            assert created.status_code == 201


async def test_serve_runs_the_outbox_relay_and_stops_it_cleanly(
    settings: Settings, conns: Connections
) -> None:
    # A job stored earlier whose event is overdue: as if a gateway died before publishing.
    new = NewJob(
        job_id=f"owed-{uuid.uuid4().hex[:8]}",
        app_id="a",
        user_id="u",
        job_type="t",
        payload="{}",
        timeout_seconds=None,
        trace_id="trace-owed",
    )
    await conns.store.create_job(new)
    await conns.store.jobs.update_one(
        {"_id": new.job_id}, {"$set": {"announce_due_at": utcnow() - timedelta(seconds=1)}}
    )
    served = settings.model_copy(update={"port": free_port(), "relay_interval_seconds": 0.2})
    task = asyncio.create_task(serve(served))

    [event] = await read_events(
        settings, conns.topics.requested, JobRequested, key=new.job_id, until=bool, timeout=30
    )
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert (event.job_id, event.attempt, event.trace_id) == (new.job_id, 1, "trace-owed")
    assert [t for t in asyncio.all_tasks() if t.get_name() == "outbox-relay"] == []
