from __future__ import annotations

from ...harness import Gateway


async def test_liveness_and_readiness(gateway: Gateway) -> None:
    assert (await gateway.http.get("/healthz")).json() == {"status": "ok"}
    ready = await gateway.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}
