"""Fixtures for the shared library's tests against the real local Kafka and store."""

from __future__ import annotations

import pytest
from jobplane.config import CommonSettings
from jobplane_local.testing import Infra


@pytest.fixture
def settings(infra: Infra, topic_prefix: str, mongo_db_name: str) -> CommonSettings:
    return CommonSettings(
        kafka_bootstrap_servers=infra.kafka_bootstrap,
        mongodb_uri=infra.mongodb_uri,
        topic_prefix=topic_prefix,
        topic_partitions=2,
        mongodb_database=mongo_db_name,
    )
