from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
from jobplane_gateway.config import Settings
from jobplane_gateway.main import create_app, serve

from tests.support import free_port

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
