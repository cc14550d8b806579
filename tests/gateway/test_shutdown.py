"""Graceful stop of the gateway process: SIGTERM → no new connections, the request in
flight finishes, the relay stops, the producer is flushed, exit 0 in bounded time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time

import httpx
from jobplane_gateway.config import Settings

from .harness import ADMIN_KEY

STOP_BOUND_S = 15.0


def front_port() -> int:
    """A free port of the range kept for the gateway's own test servers (84xx)."""
    for port in range(8400, 8500):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 8400-8499")


async def test_sigterm_finishes_the_request_in_flight_and_exits_zero(settings: Settings) -> None:
    port = front_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "MONGODB_URI": settings.mongodb_uri,
        "MONGODB_DATABASE": settings.mongodb_database,
        "TOPIC_PREFIX": settings.topic_prefix,
        "TOPIC_PARTITIONS": str(settings.topic_partitions),
        "ADMIN_API_KEY": ADMIN_KEY,
        "PORT": str(port),
        "RELAY_INTERVAL_SECONDS": "0.2",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from jobplane_gateway.main import run; run()",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            for _ in range(300):
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        # A request in flight: headers and half its body sent when the signal comes.
        body = json.dumps({"app_id": "in-flight", "backend_url": "http://b.test/"}).encode()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /v1/apps HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {ADMIN_KEY}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body[:10]
        )
        await writer.drain()
        await asyncio.sleep(0.3)
        stop_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        writer.write(body[10:])
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), STOP_BOUND_S)
        writer.close()
        output, _ = await asyncio.wait_for(process.communicate(), STOP_BOUND_S)
        took = time.monotonic() - stop_at
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    lines = [json.loads(line) for line in output.decode().splitlines() if line.startswith("{")]
    messages = [line["msg"] for line in lines]
    assert status_line.startswith(b"HTTP/1.1 201"), (status_line, output.decode()[-3000:])
    assert process.returncode == 0, output.decode()[-3000:]
    assert took < STOP_BOUND_S
    assert "relay stopped" in messages
    assert messages.index("relay stopped") < messages.index("stopped")
