"""Fixtures for the gateway's tests: the real app over real Kafka and the store, called in
process through httpx's ASGI transport."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from jobplane.connections import Connections, connect
from jobplane_gateway.config import Settings
from jobplane_gateway.main import create_app
from jobplane_local.testing import Infra

from .harness import BASE_URL, Gateway, make_settings


@pytest.fixture
def settings(infra: Infra, topic_prefix: str, mongo_db_name: str) -> Settings:
    return make_settings(infra, topic_prefix, mongo_db_name)


@pytest.fixture
async def conns(settings: Settings) -> AsyncIterator[Connections]:
    async with connect(settings, "gateway-test") as opened:
        yield opened


@pytest.fixture
async def gateway(settings: Settings, conns: Connections) -> AsyncIterator[Gateway]:
    transport = httpx.ASGITransport(app=create_app(settings, conns))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        yield Gateway(http=http, conns=conns, settings=settings)
