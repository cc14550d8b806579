"""Fixtures for the retry service's tests against the real local Kafka and store."""

from __future__ import annotations

import json

import pytest
from jobplane.events import Failure, FailureKind, JobFailed
from jobplane.logs import new_trace_id
from jobplane.store import JobStore, NewJob
from jobplane_local.testing import Infra
from jobplane_retry.config import Settings


@pytest.fixture
def settings(infra: Infra, topic_prefix: str, mongo_db_name: str, unique_id: str) -> Settings:
    return Settings(
        kafka_bootstrap_servers=infra.kafka_bootstrap,
        mongodb_uri=infra.mongodb_uri,
        topic_prefix=topic_prefix,
        topic_partitions=2,
        mongodb_database=mongo_db_name,
        router_group_id=f"test-retry-router-{unique_id}",
        tiers_group_id=f"test-retry-tiers-{unique_id}",
        retry_delays_seconds=[60.0, 120.0, 240.0, 480.0, 960.0],
        jitter=0.1,
    )


async def new_job(store: JobStore, job_id: str, *, app_id: str = "app-1") -> NewJob:
    new = NewJob(
        job_id=job_id,
        app_id=app_id,
        user_id="user-1",
        job_type="thumbnail",
        payload=json.dumps({"size": [64, 64]}),
        timeout_seconds=120,
        trace_id=new_trace_id(),
    )
    await store.create_job(new)
    return new


def job_failed(
    new: NewJob, attempt: int, *, retryable: bool = True, message: str = "HTTP 503"
) -> JobFailed:
    return JobFailed(
        job_id=new.job_id,
        app_id=new.app_id,
        user_id=new.user_id,
        attempt=attempt,
        trace_id=new.trace_id,
        job_type=new.job_type,
        payload=new.payload,
        timeout_seconds=new.timeout_seconds,
        failure=Failure(
            kind=FailureKind.HTTP_STATUS, message=message, retryable=retryable, http_status=503
        ),
    )
