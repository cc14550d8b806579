"""The dispatcher service: job.requested → the app's backend; deadlines → job.failed."""

from __future__ import annotations

import asyncio

from jobplane import metrics, service, tracing
from jobplane.connections import connect, consume
from jobplane.events import Event, JobRequested

from jobplane_dispatcher.backend import BackendClient
from jobplane_dispatcher.config import Settings
from jobplane_dispatcher.deadlines import DeadlineSweeper
from jobplane_dispatcher.dispatch import Dispatcher, not_before
from jobplane_dispatcher.limits import AppLimits

SERVICE = "dispatcher"


def _expected(topic: str) -> type[Event]:
    return JobRequested


async def serve(settings: Settings) -> None:
    """Dispatch requested jobs and sweep deadlines until cancelled."""
    with (
        tracing.traced(SERVICE),
        metrics.exported(settings.metrics_port, settings.metrics_host),
    ):
        await _serve(settings)


async def _serve(settings: Settings) -> None:
    async with (
        connect(settings, f"jobplane-{SERVICE}") as conns,
        BackendClient(settings) as backend,
    ):
        dispatcher = Dispatcher(
            settings, conns.store, conns.publisher, conns.topics, backend, AppLimits()
        )
        sweeper = DeadlineSweeper(
            conns.store,
            conns.publisher,
            conns.topics,
            settings.deadline_check_interval_seconds,
            settings.announce_grace,
        )
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(
                consume(
                    conns,
                    settings.group_id,
                    [conns.topics.requested],
                    _expected,
                    dispatcher.handle,
                    concurrency=settings.concurrency,
                    not_before=not_before,
                )
            )
            tasks.create_task(sweeper.run())


def run() -> None:
    settings = Settings()
    service.run(SERVICE, serve(settings), settings.log_level)
