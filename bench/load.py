"""The load generator, a process of its own so that its CPU is measured apart.

    python -m bench.load '<spec as JSON>'

Jobplane: the public HTTP API only (`POST /v1/jobs` with the app's key). Celery: the task's
`apply_async()` (what `delay()` does, with the job id as the task id). Jobs are submitted with at
most `in_flight` requests at once, as fast as they are answered, or open-loop at `rate` jobs/s.
Prints `submitted N` as it goes; writes every submit (job id, start, answer time, status) as
JSON to `out`.

Before the first measured submit, each client opens its connections, as a long-running client
has them open already: `in_flight` keep-alive connections to the gateway (`GET /healthz`),
and each of Celery's `in_flight` submitting threads publishes once to a queue no worker reads
(purged after). Measured: a thread's first `apply_async` took 690 ms p50 and up to 1 s (32
threads connecting at once), the calls after it 1.9 ms p50; counted in, those 32 first calls
of 1,000 were Celery's accept p99 at every rate.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

Submit = tuple[str, float, float, int]  # job id, started, answered, HTTP-like status


class Progress:
    def __init__(self, every: int) -> None:
        self.every = every
        self.count = 0
        self.lock = threading.Lock()

    def tick(self) -> None:
        with self.lock:
            self.count += 1
            if self.count % self.every == 0:
                print(f"submitted {self.count}", flush=True)


def payload(n: int) -> dict[str, Any]:
    return {"image": f"https://images.example.com/{n}.jpg", "size": [160, 120]}


class CpuMeter:
    """This process's CPU seconds since ``start``."""

    def __init__(self) -> None:
        self.started = 0.0

    @staticmethod
    def _now() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def start(self) -> None:
        self.started = self._now()

    def seconds(self) -> float:
        return self._now() - self.started


async def jobplane(spec: dict[str, Any], progress: Progress, cpu: CpuMeter) -> list[Submit]:
    """aiohttp on uvloop: about a third of httpx's CPU per request (measured: 5.3 → ~2 ms
    per submit), so the load generator takes less of the two cores the platform runs on."""
    jobs, in_flight, rate = spec["jobs"], spec["in_flight"], spec.get("rate")
    headers = {"Authorization": f"Bearer {spec['api_key']}"}
    slots = asyncio.Semaphore(in_flight)
    submits: list[Submit] = []
    connector = aiohttp.TCPConnector(limit=in_flight)
    timeout = aiohttp.ClientTimeout(total=60)
    gateway = spec["gateway"].rstrip("/")
    url = f"{gateway}/v1/jobs"
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as http:

        async def connect() -> None:
            async with http.get(f"{gateway}/healthz") as response:
                await response.read()

        await asyncio.gather(*(connect() for _ in range(in_flight)))
        cpu.start()
        began = time.monotonic()

        async def one(n: int) -> None:
            if rate:
                await asyncio.sleep(max(0.0, began + n / rate - time.monotonic()))
            async with slots:
                started = time.time()
                body = {"user_id": spec["user_id"], "job_type": "thumbnail", "payload": payload(n)}
                try:
                    async with http.post(url, json=body) as response:
                        status = response.status
                        answer = await response.json() if status == 202 else {}
                    job_id = answer.get("job_id", "")
                except (aiohttp.ClientError, TimeoutError):
                    status, job_id = 0, ""
                submits.append((job_id, started, time.time(), status))
                progress.tick()

        await asyncio.gather(*(one(n) for n in range(jobs)))
    return submits


WARM_UP_QUEUE = "bench-warm-up"


def celery(spec: dict[str, Any], progress: Progress, cpu: CpuMeter) -> list[Submit]:
    from bench.celery_app import app, run_job

    jobs, in_flight, rate = spec["jobs"], spec["in_flight"], spec.get("rate")
    connected = threading.Barrier(in_flight)

    def connect(_: int) -> None:
        try:
            run_job.apply_async(args=("warm-up", "", "", {}), queue=WARM_UP_QUEUE)
        except BaseException:
            connected.abort()  # the others would wait for this thread for ever
            raise
        # Every thread waits in its first call until all have made theirs, so that each of
        # the pool's threads (not one thread again and again) is connected.
        connected.wait()

    def one(n: int) -> Submit:
        if rate:
            time.sleep(max(0.0, began + n / rate - time.monotonic()))
        job_id = str(uuid.uuid4())
        started = time.time()
        try:
            run_job.apply_async(
                args=(job_id, spec["email"], "thumbnail", payload(n)), task_id=job_id
            )
            status = 202
        except Exception:  # any broker error is a rejected submit, counted
            status = 0
        answered = time.time()
        progress.tick()
        return job_id, started, answered, status

    with ThreadPoolExecutor(max_workers=in_flight) as pool:
        list(pool.map(connect, range(in_flight)))
        with app.connection_for_write() as connection:
            connection.default_channel.queue_purge(WARM_UP_QUEUE)
        cpu.start()
        began = time.monotonic()
        return list(pool.map(one, range(jobs)))


def main() -> None:
    spec: dict[str, Any] = json.loads(sys.argv[1])
    progress = Progress(max(1, spec["jobs"] // 50))
    if spec["system"] == "celery":
        # Imported (and configured) before the CPU count starts: start-up is not submitting.
        os.environ.update({k: str(v) for k, v in spec.items() if k.startswith("BENCH_")})
        import bench.celery_app  # noqa: F401
    cpu = CpuMeter()  # started once the client is connected: connecting is not submitting
    if spec["system"] == "jobplane":
        submits = uvloop.run(jobplane(spec, progress, cpu))
    else:
        submits = celery(spec, progress, cpu)
    Path(spec["out"]).write_text(
        json.dumps(
            {
                "submits": submits,
                "cpu_seconds": cpu.seconds(),
                "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            }
        )
    )
    print(f"submitted {len(submits)}", flush=True)


if __name__ == "__main__":
    main()
