"""The load generator, a process of its own so that its CPU is measured apart.

    python -m bench.load '<spec as JSON>'

Jobplane: the public HTTP API only (`POST /v1/jobs` with the app's key). Celery: the task's
`apply_async()` (what `delay()` does, with the job id as the task id). Jobs are submitted with at
most `in_flight` requests at once, as fast as they are answered, or open-loop at `rate` jobs/s.
Prints `submitted N` as it goes; writes every submit (job id, start, answer time, status) as
JSON to `out`.
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


async def jobplane(spec: dict[str, Any], progress: Progress) -> list[Submit]:
    """aiohttp on uvloop: about a third of httpx's CPU per request (measured: 5.3 → ~2 ms
    per submit), so the load generator takes less of the two cores the platform runs on."""
    jobs, in_flight, rate = spec["jobs"], spec["in_flight"], spec.get("rate")
    headers = {"Authorization": f"Bearer {spec['api_key']}"}
    slots = asyncio.Semaphore(in_flight)
    submits: list[Submit] = []
    connector = aiohttp.TCPConnector(limit=in_flight)
    timeout = aiohttp.ClientTimeout(total=60)
    url = f"{spec['gateway'].rstrip('/')}/v1/jobs"
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as http:
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


def celery(spec: dict[str, Any], progress: Progress) -> list[Submit]:
    from bench.celery_app import run_job

    jobs, in_flight, rate = spec["jobs"], spec["in_flight"], spec.get("rate")
    began = time.monotonic()

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
        return list(pool.map(one, range(jobs)))


def main() -> None:
    spec: dict[str, Any] = json.loads(sys.argv[1])
    progress = Progress(max(1, spec["jobs"] // 50))
    if spec["system"] == "celery":
        # Imported (and configured) before the CPU count starts: start-up is not submitting.
        os.environ.update({k: str(v) for k, v in spec.items() if k.startswith("BENCH_")})
        import bench.celery_app  # noqa: F401
    ready = resource.getrusage(resource.RUSAGE_SELF)
    if spec["system"] == "jobplane":
        submits = uvloop.run(jobplane(spec, progress))
    else:
        submits = celery(spec, progress)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    Path(spec["out"]).write_text(
        json.dumps(
            {
                "submits": submits,
                "cpu_seconds": usage.ru_utime + usage.ru_stime - ready.ru_utime - ready.ru_stime,
                "peak_rss": usage.ru_maxrss * 1024,
            }
        )
    )
    print(f"submitted {len(submits)}", flush=True)


if __name__ == "__main__":
    main()
