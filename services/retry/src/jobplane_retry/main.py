"""The retry service: route failures to delay tiers or ``job.dead``; re-request due retries."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from jobplane import metrics, service, tracing
from jobplane.connections import connect, consume
from jobplane.events import JobFailed

from jobplane_retry.config import Settings
from jobplane_retry.policy import RetryPolicy
from jobplane_retry.router import Router
from jobplane_retry.tiers import run_tiers


async def serve(settings: Settings) -> None:
    """Run the router and the delay tiers side by side until cancelled."""
    with (
        tracing.traced("retry"),
        metrics.exported(settings.metrics_port, settings.metrics_host),
    ):
        await _serve(settings)


async def _serve(settings: Settings) -> None:
    async with connect(settings, "jobplane-retry") as conns:
        router = Router(
            conns.store,
            conns.publisher,
            conns.topics,
            RetryPolicy.from_settings(settings),
            announce_grace=timedelta(seconds=settings.announce_grace_seconds),
        )
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(
                consume(
                    conns,
                    settings.router_group_id,
                    [conns.topics.failed],
                    lambda _topic: JobFailed,
                    router.handle,
                    concurrency=settings.router_concurrency,
                    ordered=True,
                )
            )
            tasks.create_task(run_tiers(settings, conns.topics))


def run() -> None:
    settings = Settings()
    service.run("retry", serve(settings), settings=settings)
