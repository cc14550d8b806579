"""Fixtures for the notifier's tests against the real Kafka, store and an SMTP sink."""

from __future__ import annotations

import pytest
from jobplane.store import JobStore, User
from jobplane_local.testing import Infra
from jobplane_notifier.config import Settings


@pytest.fixture
def settings(infra: Infra, topic_prefix: str, mongo_db_name: str, unique_id: str) -> Settings:
    return Settings(
        kafka_bootstrap_servers=infra.kafka_bootstrap,
        mongodb_uri=infra.mongodb_uri,
        topic_prefix=topic_prefix,
        # One partition and one event at a time: a later event's mail proves the earlier
        # events were handled.
        topic_partitions=1,
        concurrency=1,
        mongodb_database=mongo_db_name,
        group_id=f"test-notifier-{unique_id}",
        smtp_host=infra.smtp_host,
        smtp_port=infra.smtp_port,
        smtp_timeout_seconds=5,
        mail_from="Jobplane Test <jobplane@jobplane.test>",
        admin_emails=[f"ops-{unique_id}@example.com", f"OPS-{unique_id}@example.com"],
        status_page_url="https://jobs.example.com/status/",
    )


async def register(
    store: JobStore, unique_id: str, *, language: str = "en", app_admins: list[str] | None = None
) -> tuple[str, User]:
    app_id = f"app-{unique_id}"
    await store.create_app(
        app_id=app_id,
        backend_url="http://backend.test/jobs",
        default_timeout_seconds=60,
        admin_emails=app_admins or [],
        api_key_hash="0" * 64,
        max_concurrency=4,
    )
    user = User(
        app_id=app_id,
        user_id=f"user-{unique_id}",
        email=f"user-{unique_id}@example.com",
        language=language,
    )
    await store.upsert_user(user)
    return app_id, user
