"""Store commands on the gateway's hot paths, counted with PyMongo's command monitoring:
a submit is one insert, a result callback one guarded find-and-modify."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import httpx
import pytest
from jobplane.connections import Connections
from jobplane.store import JobStore
from jobplane.store import connect as connect_mongo
from jobplane_gateway.config import Settings
from jobplane_gateway.main import create_app
from pymongo import monitoring

from .harness import BASE_URL, Gateway


class CommandCounter(monitoring.CommandListener):
    def __init__(self) -> None:
        self.commands: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def take(self) -> list[str]:
        taken, self.commands = self.commands, []
        return taken


@pytest.fixture
async def counted(
    settings: Settings, conns: Connections
) -> AsyncIterator[tuple[Gateway, CommandCounter]]:
    counter = CommandCounter()
    client = connect_mongo(settings)
    monitored = type(client)(
        settings.mongodb_uri, tz_aware=True, tzinfo=client.codec_options.tzinfo,
        event_listeners=[counter],
    )  # fmt: skip
    await client.close()
    store = JobStore.from_settings(monitored, settings)
    await store.prepare()  # as every service does at start-up
    watched = dataclasses.replace(conns, store=store)
    transport = httpx.ASGITransport(app=create_app(settings, watched))
    try:
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
            yield Gateway(http=http, conns=watched, settings=settings), counter
    finally:
        await monitored.close()


async def test_store_commands_per_submit_and_per_callback(
    counted: tuple[Gateway, CommandCounter],
) -> None:
    gateway, counter = counted
    app = await gateway.register_app()
    user_id = await gateway.register_user(app)
    warm = await gateway.submit(app, user_id)  # reads the app and the user into the caches
    assert warm.status_code == 202
    counter.take()

    submitted = await gateway.submit(app, user_id, headers={"Idempotency-Key": "count-1"})
    submit_commands = counter.take()
    job_id = submitted.json()["job_id"]
    token = await gateway.dispatch(job_id, 1)
    counter.take()
    reported = await gateway.http.post(
        f"/v1/jobs/{job_id}/result",
        json={"attempt": 1, "status": "succeeded", "result": {"ok": True}},
        headers={"Authorization": f"Bearer {token}"},
    )
    callback_commands = counter.take()
    other = await gateway.submit(app, user_id)
    other_token = await gateway.dispatch(other.json()["job_id"], 1)
    counter.take()
    failed = await gateway.http.post(
        f"/v1/jobs/{other.json()['job_id']}/result",
        json={"attempt": 1, "status": "failed", "error": {"message": "no"}},
        headers={"Authorization": f"Bearer {other_token}"},
    )
    failure_commands = counter.take()

    print(
        f"\nstore commands: submit {submit_commands}, success callback {callback_commands}, "
        f"failure callback {failure_commands}"
    )
    assert submitted.status_code == 202 and reported.json()["recorded"] is True
    assert failed.json()["recorded"] is True
    assert submit_commands == ["insert"]
    assert callback_commands == ["findAndModify"]
    assert failure_commands == ["findAndModify"]
