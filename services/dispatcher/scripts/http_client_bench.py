"""Dispatch POSTs per second with httpx and with aiohttp, against a local backend.

    uv run python services/dispatcher/scripts/http_client_bench.py --calls 5000 --in-flight 32

The backend is a minimal keep-alive HTTP/1.1 server answering 202 with a small JSON body, in
its own process (so that its CPU is not the client's). Each client runs ``--runs`` times,
alternating; the line per run gives calls/s and the client's CPU ms per call, the last line
the medians. The clients are set up as the dispatcher sets up its own: one pooled client,
connections kept alive, ``--in-flight`` connections at most.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import httpx

BODY = {
    "job_id": "job-0000000000",
    "app_id": "bench-app",
    "user_id": "user-1",
    "attempt": 1,
    "job_type": "thumbnail",
    "payload": {"size": [64, 64], "source": "s3://bucket/key/0001.png"},
    "callback_url": "http://127.0.0.1:8000/v1/jobs/job-0000000000/result",
    "callback_token": "x" * 43,
    "deadline": "2030-01-01T00:00:00Z",
}
ANSWER = b'{"accepted":true}'
RESPONSE = (
    b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: "
    + str(len(ANSWER)).encode()
    + b"\r\n\r\n"
    + ANSWER
)


class Backend(asyncio.Protocol):
    """Just enough HTTP/1.1: one answer per request (headers + Content-Length body)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            length = 0
            for line in head.split(b"\r\n"):
                if line.startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            self.transport.write(RESPONSE)


def serve_backend(port: int) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Backend, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


async def load(call: Callable[[], Awaitable[int]], calls: int, in_flight: int) -> float:
    remaining = calls

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            status = await call()
            assert status == 202, status

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return time.perf_counter() - started


async def run_httpx(url: str, calls: int, in_flight: int) -> tuple[float, float]:
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(30.0, connect=5.0, pool=None),
        limits=httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight),
    ) as client:

        async def call() -> int:
            response = await client.post(url, json=BODY)
            return response.status_code

        await load(call, in_flight * 4, in_flight)  # warm the pool
        cpu = time.process_time()
        elapsed = await load(call, calls, in_flight)
        return elapsed, time.process_time() - cpu


async def run_aiohttp(url: str, calls: int, in_flight: int) -> tuple[float, float]:
    connector = aiohttp.TCPConnector(limit=in_flight, keepalive_timeout=30)
    timeout = aiohttp.ClientTimeout(total=None, connect=5.0, sock_read=30.0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def call() -> int:
            async with session.post(url, json=BODY) as response:
                await response.read()
                return response.status

        await load(call, in_flight * 4, in_flight)
        cpu = time.process_time()
        elapsed = await load(call, calls, in_flight)
        return elapsed, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--port", type=int, default=8531)
    args = parser.parse_args()
    backend = multiprocessing.Process(target=serve_backend, args=(args.port,), daemon=True)
    backend.start()
    time.sleep(0.5)
    url = f"http://127.0.0.1:{args.port}/jobs"
    clients: dict[str, Any] = {"httpx": run_httpx, "aiohttp": run_aiohttp}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}
    try:
        for run in range(args.runs):
            for name, bench in clients.items():
                elapsed, cpu = asyncio.run(bench(url, args.calls, args.in_flight))
                results[name].append((args.calls / elapsed, cpu * 1000 / args.calls))
                rate, cpu_ms = results[name][-1]
                print(f"run {run + 1} {name:8} {rate:8.0f} calls/s  {cpu_ms:.3f} ms CPU/call")
    finally:
        backend.terminate()
        backend.join()
    summary = {
        name: {
            "calls_per_s": round(statistics.median(r for r, _ in runs)),
            "client_cpu_ms_per_call": round(statistics.median(c for _, c in runs), 3),
        }
        for name, runs in results.items()
    }
    print(json.dumps({"calls": args.calls, "in_flight": args.in_flight, "median": summary}))


if __name__ == "__main__":
    main()
