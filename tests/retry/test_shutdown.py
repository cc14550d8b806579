"""Graceful stop of a real service process: SIGTERM → finish, commit, leave, exit 0."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time

from jobplane.events import JobRetryScheduled
from jobplane.kafka import Publisher
from jobplane.store import JobStore
from jobplane.topics import Topics
from jobplane_retry.config import Settings

from tests.support import committed, of_job, read_events

from .conftest import job_failed, new_job

STOP_BOUND_S = 15.0


async def test_sigterm_commits_what_is_done_and_exits_zero_in_time(
    settings: Settings, topics: Topics, store: JobStore, publisher: Publisher, unique_id: str
) -> None:
    jobs = [await new_job(store, f"job-{n}-{unique_id}") for n in range(20)]
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "MONGODB_URI": settings.mongodb_uri,
        "MONGODB_DATABASE": settings.mongodb_database,
        "TOPIC_PREFIX": settings.topic_prefix,
        "TOPIC_PARTITIONS": str(settings.topic_partitions),
        "ROUTER_GROUP_ID": settings.router_group_id,
        "TIERS_GROUP_ID": settings.tiers_group_id,
        "RETRY_DELAYS_SECONDS": json.dumps(settings.retry_delays_seconds),
        "DRAIN_TIMEOUT_SECONDS": "5",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from jobplane_retry.main import run; run()",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        sent = [await publisher.send(topics.failed, job_failed(new, 1)) for new in jobs]
        await asyncio.gather(*sent)
        last = jobs[-1].job_id
        await read_events(
            settings, topics.retry(1), JobRetryScheduled, until=bool, where=of_job(last)
        )
        await read_events(
            settings,
            topics.retry(1),
            JobRetryScheduled,
            until=lambda found: len(found) >= len(jobs),
            timeout=30,
        )
        # Everything is routed; the periodic commit may not have run yet: the stop must.
        stop_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), STOP_BOUND_S)
        took = time.monotonic() - stop_at
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    lines = [json.loads(line) for line in output.decode().splitlines() if line.startswith("{")]
    assert process.returncode == 0, output.decode()[-3000:]
    print(f"stopped in {took:.2f} s")
    assert took < STOP_BOUND_S
    assert any(line["msg"] == "stopped" for line in lines)
    offsets = await committed(settings, settings.router_group_id, topics.failed)
    assert sum(offsets.values()) == len(jobs)
