"""One run of each system: start it, warm it up, load it, watch the e-mails, measure, stop it.

Jobplane: the four console scripts as separate processes (as deployed; `--dispatchers N` runs
N dispatcher instances in one consumer group) on the benchmark's Kafka and store, with a fresh
topic prefix and database per run. Celery: one worker process (its pool chosen per run) on the
benchmark's Redis, flushed per run. Both call the same backend process and send to the same
SMTP sink; the load generator is a process of its own (`bench.load`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from jobplane_local.infra import endpoints
from jobplane_local.platform import BACKGROUND_SERVICES, PlatformProcess
from jobplane_local.service import Log, Port, Service, inherited_env

from bench import mail, metrics, profiling
from bench.cleanup import RUN_PREFIX, Cleanup, delete_topics, drop_databases
from bench.figures import cost_figures, outcome_figures, released_late_ms, retry_figures
from bench.infra import BACKEND_PORT, GATEWAY_PORT, HOST, BenchServers
from bench.stats import Figures, lateness_figures, per_job

REPO = Path(__file__).resolve().parent.parent
ADMIN_KEY = "bench-admin-key"
RETRY_DELAYS = [1.0, 2.0, 4.0, 8.0, 16.0]
JITTER = 0.1
WARM_UP_JOBS = 10
BACKEND_URL = f"http://{HOST}:{BACKEND_PORT}"

Progress = Callable[[int, int], None]  # (e-mails in, submitted)


@dataclass
class RunSpec:
    system: str  # "jobplane" | "celery"
    scenario: str
    jobs: int
    in_flight: int
    fail_rate: float = 0.0
    accept_delay: float = 0.0
    rate: float | None = None  # open loop at this many submits/s; None: as fast as answered
    dispatchers: int = 1
    preload: int = 0
    pool: str = "prefork"
    pool_size: int = 2
    mode: str = "result"
    profile: bool = False
    timeout: float = 900.0

    @property
    def label(self) -> str:
        return f"{self.system}/{self.scenario}"


@dataclass
class RunResult:
    spec: RunSpec
    figures: Figures
    hot_spots: dict[str, profiling.HotSpots] = field(default_factory=dict)


@dataclass
class Bench:
    servers: BenchServers
    results_dir: Path
    log: Log
    backend_pid: int = 0
    cleanup: Cleanup = field(init=False)

    def __post_init__(self) -> None:
        aside = self.servers.config.local_dir / "bench-mail-set-aside"
        self.cleanup = Cleanup(aside, self.log)

    @property
    def mail_dir(self) -> Path:
        return self.servers.mail_dir


# --- processes -------------------------------------------------------------------------------


class ServiceProcess(PlatformProcess):
    """A Jobplane service from its console script; `name` may number an instance."""

    def __init__(
        self, bench: Bench, name: str, script: str, env: dict[str, str], port: int | None = None
    ) -> None:
        service = script.removeprefix("jobplane-")
        super().__init__(
            bench.servers.config, name, env, port, background=service in BACKGROUND_SERVICES
        )
        self.script = script

    @property
    def marker(self) -> str:
        return self.script


class CeleryWorker(Service):
    name = "celery-worker"
    stop_timeout = 20.0

    @property
    def background(self) -> bool:
        # At the priority of Jobplane's consumers (JOBPLANE_BACKGROUND_NICE): both systems' work
        # behind a submit runs as background work.
        return True

    def __init__(self, bench: Bench, pool: str, size: int, env: dict[str, str]) -> None:
        super().__init__(bench.servers.config)
        self.pool = pool
        self.size = size
        self.env = env

    @property
    def marker(self) -> str:
        return "bench.celery_app"

    @property
    def ports(self) -> list[Port]:
        return []

    @property
    def address(self) -> str:
        return "-"

    def command(self) -> list[str]:
        return [
            str(Path(sys.executable).parent / "celery"), "-A", "bench.celery_app", "worker",
            "-P", self.pool, "-c", str(self.size), "--loglevel", "INFO",
            "--without-gossip", "--without-mingle", "-n", "bench@localhost",
        ]  # fmt: skip

    def environment(self) -> dict[str, str]:
        return inherited_env(PYTHONPATH=str(REPO), **self.env)

    def prepare(self) -> None:
        if self.log_file.exists():
            self.log_file.replace(self.log_file.with_suffix(".log.1"))

    def ready(self) -> bool:
        return self.log_file.exists() and " ready." in self.log_file.read_text()


def start_backend(bench: Bench) -> Service:
    class BackendProcess(Service):
        name = "backend"

        @property
        def marker(self) -> str:
            return "bench.backend"

        @property
        def ports(self) -> list[Port]:
            return [Port(BACKEND_PORT, "the bench backend", "-")]

        def command(self) -> list[str]:
            return [sys.executable, "-m", "bench.backend", "--port", str(BACKEND_PORT)]

        def environment(self) -> dict[str, str]:
            return inherited_env(PYTHONPATH=str(REPO))

        def ready(self) -> bool:
            from jobplane_local.processes import port_open

            return port_open(HOST, BACKEND_PORT)

    backend = BackendProcess(bench.servers.config)
    bench.backend_pid = backend.start(bench.log)
    return backend


# --- the load generator ----------------------------------------------------------------------


@dataclass
class Load:
    submits: list[tuple[str, float, float, int]]
    cpu_seconds: float
    peak_rss: int


async def load(spec: dict[str, Any], on_submitted: Callable[[int], None]) -> Load:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        path = Path(out.name)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.load",
        json.dumps({**spec, "out": str(path)}),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    async for line in process.stdout:
        if line.startswith(b"submitted "):
            on_submitted(int(line.split()[1]))
    if await process.wait() != 0:
        raise RuntimeError(f"the load generator failed (exit {process.returncode})")
    result = json.loads(await asyncio.to_thread(path.read_text))
    await asyncio.to_thread(path.unlink)
    return Load([tuple(s) for s in result["submits"]], result["cpu_seconds"], result["peak_rss"])


# --- shared measurement ----------------------------------------------------------------------


async def backend_call(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    async with httpx.AsyncClient(base_url=BACKEND_URL, timeout=30) as http:
        response = await http.request(method, path, json=body)
        response.raise_for_status()
        return response.json()


async def wait_for_mail(
    watcher: mail.MailWatcher,
    ids: Callable[[], set[str]],
    loading: asyncio.Task[Load],
    within: float,
    progress: Progress,
    submitted: Callable[[], int],
    stall: float = 60.0,
) -> None:
    """Until every submitted job's e-mail is in, the run takes longer than `within` seconds,
    or nothing moves for `stall` seconds after the last submit."""
    deadline = time.monotonic() + within
    last_change, last_count = time.monotonic(), -1
    while time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        await asyncio.to_thread(watcher.poll)
        count = len(watcher.received)
        progress(count, submitted())
        if count != last_count:
            last_change, last_count = time.monotonic(), count
        if loading.done():
            loading.result()
            if ids() <= watcher.received.keys():
                return
            if time.monotonic() - last_change > stall:
                return


# --- Jobplane --------------------------------------------------------------------------------


def jobplane_processes(bench: Bench, spec: RunSpec, prefix: str) -> list[ServiceProcess]:
    servers = bench.servers
    common = {
        **endpoints(servers.config).service_env(),
        "MONGODB_DATABASE": prefix.rstrip(".").replace(".", "_"),
        "TOPIC_PREFIX": prefix,
        "LOG_LEVEL": "INFO",
    }
    gateway_url = f"http://{HOST}:{GATEWAY_PORT}"
    gateway_env = {
        **common, "ADMIN_API_KEY": ADMIN_KEY, "HOST": HOST, "PORT": str(GATEWAY_PORT),
        "PUBLIC_URL": gateway_url,
    }  # fmt: skip
    processes = [ServiceProcess(bench, "gateway", "jobplane-gateway", gateway_env, GATEWAY_PORT)]
    for n in range(1, spec.dispatchers + 1):
        env = {**common, "GROUP_ID": f"{prefix}dispatcher", "GATEWAY_PUBLIC_URL": gateway_url}
        processes.append(ServiceProcess(bench, f"dispatcher-{n}", "jobplane-dispatcher", env))
    retry_env = {
        **common,
        "ROUTER_GROUP_ID": f"{prefix}retry-router",
        "TIERS_GROUP_ID": f"{prefix}retry-tiers",
        "RETRY_DELAYS_SECONDS": json.dumps(RETRY_DELAYS),
        "JITTER": str(JITTER),
    }
    processes.append(ServiceProcess(bench, "retry", "jobplane-retry", retry_env))
    notifier_env = {
        **common,
        "GROUP_ID": f"{prefix}notifier",
        "ADMIN_EMAILS": json.dumps(["admin@bench.example.com"]),
    }
    processes.append(ServiceProcess(bench, "notifier", "jobplane-notifier", notifier_env))
    return processes


async def register(in_flight: int) -> tuple[str, str, str]:
    """A new app and user through the public API: (the app's key, user id, user e-mail)."""
    app_id = f"bench-{uuid.uuid4().hex[:10]}"
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{GATEWAY_PORT}", timeout=60) as http:
        response = await http.post(
            "/v1/apps",
            json={
                "app_id": app_id,
                "backend_url": f"{BACKEND_URL}/jobs",
                "default_timeout_seconds": 300,
                "admin_emails": [f"admin@{app_id}.example.com"],
                "max_concurrency": max(in_flight, 1),
            },
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )
        response.raise_for_status()
        api_key = str(response.json()["api_key"])
        user_id = f"user-{uuid.uuid4().hex[:8]}"
        email = f"{user_id}@{app_id}.example.com"
        response = await http.put(
            f"/v1/users/{user_id}",
            json={"email": email, "language": "en"},
            headers={"Authorization": f"Bearer {api_key}"},
        )
        response.raise_for_status()
    return api_key, user_id, email


def preload(uri: str, database: str, count: int, log: Log) -> None:
    """`count` old finished jobs, shaped like the store's, in bulk."""
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]] = MongoClient(uri)
    jobs = client[database]["jobs"]
    began = time.monotonic()
    old = datetime.now(UTC) - timedelta(days=30)
    batch = 5000
    for start in range(0, count, batch):
        docs = []
        for n in range(start, min(count, start + batch)):
            created = old + timedelta(seconds=n)
            done = created + timedelta(seconds=2)
            docs.append(
                {
                    "_id": f"old-{n:08d}-{uuid.uuid4().hex[:12]}",
                    "app_id": f"old-app-{n % 20}",
                    "user_id": f"old-user-{n % 5000}",
                    "job_type": "thumbnail",
                    "payload": json.dumps({"image": f"https://images.example.com/{n}.jpg"}),
                    "timeout_seconds": None,
                    "trace_id": uuid.uuid4().hex,
                    "status": "succeeded",
                    "attempt": 1,
                    "attempts": {
                        "1": {
                            "dispatched_at": created + timedelta(milliseconds=20),
                            "accepted_at": created + timedelta(milliseconds=40),
                            "ended_at": done,
                            "report": {"status": "succeeded", "at": done},
                        }
                    },
                    "result": json.dumps({"thumbnail": f"{n}.png", "width": 160}),
                    "created_at": created,
                    "updated_at": done,
                    "notified_user_at": done + timedelta(milliseconds=50),
                    "mail": {
                        "succeeded": {
                            "state": "sent",
                            "claim_id": uuid.uuid4().hex,
                            "claimed_at": done,
                            "sent_at": done + timedelta(milliseconds=50),
                            "message_id": f"<{n}@jobplane.local>",
                        }
                    },
                }
            )
        jobs.insert_many(docs, ordered=False)
    stored = jobs.count_documents({})
    client.close()
    log(f"preloaded {count} finished jobs in {time.monotonic() - began:.1f}s ({stored} stored)")


def retry_due_times(bootstrap: str, prefix: str) -> dict[tuple[str, int], float]:
    """(job id, attempt) → when that retry was due, from the `job.retry.N` events."""
    from confluent_kafka import Consumer, TopicPartition
    from jobplane.codec import decode
    from jobplane.events import JobRetryScheduled
    from jobplane.topics import Topics

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench-retry-reader",
         "enable.auto.commit": False, "isolation.level": "read_committed"}
    )  # fmt: skip
    due: dict[tuple[str, int], float] = {}
    try:
        metadata = consumer.list_topics(timeout=10)
        wanted: list[TopicPartition] = []
        for topic in Topics(prefix).retries:
            if topic in metadata.topics:
                for p in metadata.topics[topic].partitions:
                    high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                    if high > 0:
                        wanted.append(TopicPartition(topic, p, 0))
        if not wanted:
            return due
        consumer.assign(wanted)
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < 3:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            idle_since = time.monotonic()
            event = decode(message.value() or b"", JobRetryScheduled)
            due[(event.job_id, event.retry_number + 1)] = event.due_at.timestamp()
    finally:
        consumer.close()
    return due


async def run_jobplane(bench: Bench, spec: RunSpec, progress: Progress) -> RunResult:
    servers = bench.servers
    prefix = f"{RUN_PREFIX}{uuid.uuid4().hex[:8]}."
    database = prefix.rstrip(".")
    processes = jobplane_processes(bench, spec, prefix)
    await backend_call("POST", "/config", {"mode": spec.mode, "fail_rate": 0.0, "accept_delay": 0})
    try:
        for process in processes:
            await asyncio.to_thread(process.start, bench.log)
        if spec.preload:
            await asyncio.to_thread(preload, servers.mongodb_uri, database, spec.preload, bench.log)
        api_key, user_id, email = await register(spec.in_flight)
        base = {"system": "jobplane", "gateway": f"http://{HOST}:{GATEWAY_PORT}",
                "api_key": api_key, "user_id": user_id}  # fmt: skip
        await warm_up(bench, base, email)
        await backend_call(
            "POST",
            "/config",
            {"mode": spec.mode, "fail_rate": spec.fail_rate, "accept_delay": spec.accept_delay},
        )
        await backend_call("POST", "/reset")
        pids = {p.name: p.pid() or 0 for p in processes}
        pids.update({n: pid for n, pid in servers.pids().items() if n != "redis"})
        pids["backend"] = bench.backend_pid
        recordings = []
        if spec.profile:
            for p in processes:
                recordings.append(
                    profiling.start(p.name, pids[p.name], bench.results_dir / "profile")
                )
        ops_before = await asyncio.to_thread(metrics.store_opcounters, servers.mongodb_uri)
        offsets_before = await asyncio.to_thread(
            metrics.kafka_end_offsets, servers.kafka_bootstrap, prefix
        )
        meter = metrics.ProcessMeter(pids)
        meter.start()
        watcher, load_result = await measured_load(bench, spec, base, email, progress)
        meter.stop()
        for recording in recordings:
            await asyncio.to_thread(profiling.stop, recording)
        ops_after = await asyncio.to_thread(metrics.store_opcounters, servers.mongodb_uri)
        offsets_after = await asyncio.to_thread(
            metrics.kafka_end_offsets, servers.kafka_bootstrap, prefix
        )
        calls = await backend_call("GET", "/calls")
        due = await asyncio.to_thread(retry_due_times, servers.kafka_bootstrap, prefix)
    finally:
        for process in reversed(processes):
            await asyncio.to_thread(process.stop, lambda _: None)
    if spec.preload:  # a large store is what this run measures; the next must not have it
        await asyncio.to_thread(drop_databases, servers.mongodb_uri, database)
    else:
        bench.cleanup.later(functools.partial(drop_databases, servers.mongodb_uri, database))
    bench.cleanup.later(functools.partial(delete_topics, servers.kafka_bootstrap, prefix))

    jobs = spec.jobs
    figures = outcome_figures(load_result.submits, watcher.received)
    service_names = [p.name for p in processes]
    figures.update(
        cost_figures(
            meter.cpu,
            meter.peak_rss,
            load_result.cpu_seconds,
            load_result.peak_rss,
            jobs,
            [*service_names, "kafka", "store"],
        )
    )
    ops = metrics.counter_delta(ops_before, ops_after)
    figures["store commands/job"] = per_job(sum(ops.values()), jobs)
    for name, count in ops.items():
        figures[f"store op {name}/job"] = per_job(count, jobs)
    figures["Kafka messages/job"] = per_job(
        sum(offsets_after.values()) - sum(offsets_before.get(t, 0) for t in offsets_after), jobs
    )
    figures.update(retry_figures(calls["calls"], due))
    retry_log = next(p for p in processes if p.name == "retry").log_file
    if retry_log.exists():
        released = released_late_ms(retry_log.read_text(errors="replace"))
        figures.update(lateness_figures("retry released", [ms / 1000 for ms in released]))
    figures["backend max in flight"] = float(calls["max_in_flight"])
    hot = {}
    for recording in recordings:
        if recording.output.exists():
            hot[recording.name] = profiling.hot_spots(recording.output.read_text())
    return RunResult(spec, figures, hot)


async def warm_up(bench: Bench, base: dict[str, Any], email: str) -> None:
    """A few jobs through every stage: groups joined, connections open, caches filled."""
    watcher = mail.MailWatcher(bench.mail_dir, email)
    result = await load(
        {**base, "email": email, "jobs": WARM_UP_JOBS, "in_flight": 4}, lambda _: None
    )
    ids = {s[0] for s in result.submits if s[3] == 202}
    deadline = time.monotonic() + 120
    while not ids <= watcher.received.keys():
        if time.monotonic() > deadline:
            raise RuntimeError(f"warm-up: {len(ids - watcher.received.keys())} e-mails missing")
        await asyncio.sleep(0.2)
        await asyncio.to_thread(watcher.poll)


async def measured_load(
    bench: Bench, spec: RunSpec, base: dict[str, Any], email: str, progress: Progress
) -> tuple[mail.MailWatcher, Load]:
    await asyncio.to_thread(mail.set_aside, bench.mail_dir, bench.cleanup.mail_set_aside)
    watcher = mail.MailWatcher(bench.mail_dir, email)
    submitted = 0

    def on_submitted(count: int) -> None:
        nonlocal submitted
        submitted = count

    request = {
        **base,
        "email": email,
        "jobs": spec.jobs,
        "in_flight": spec.in_flight,
        "rate": spec.rate,
    }
    loading = asyncio.create_task(load(request, on_submitted))
    await wait_for_mail(
        watcher,
        lambda: {s[0] for s in loading.result().submits if s[3] == 202},
        loading,
        spec.timeout,
        progress,
        lambda: submitted,
    )
    if not loading.done():
        loading.cancel()
        raise RuntimeError(f"{spec.label}: the submits did not finish within {spec.timeout:.0f}s")
    return watcher, loading.result()


# --- Celery ----------------------------------------------------------------------------------


async def run_celery(bench: Bench, spec: RunSpec, progress: Progress) -> RunResult:
    import redis

    servers = bench.servers
    client = redis.Redis.from_url(servers.redis_url)
    client.flushall()
    client.close()
    env = {
        "BENCH_REDIS_URL": servers.redis_url,
        "BENCH_BACKEND_URL": f"{BACKEND_URL}/jobs",
        "BENCH_SMTP_PORT": str(servers.config.smtp_port),
        "BENCH_RETRY_DELAYS": json.dumps(RETRY_DELAYS),
        "BENCH_JITTER": str(JITTER),
    }
    worker = CeleryWorker(bench, spec.pool, spec.pool_size, env)
    await backend_call("POST", "/config", {"mode": "result", "fail_rate": 0.0, "accept_delay": 0})
    email = f"user-{uuid.uuid4().hex[:8]}@celery.example.com"
    base = {"system": "celery", "email": email}
    try:
        await asyncio.to_thread(worker.start, bench.log)
        await warm_up(bench, base, email)
        await backend_call(
            "POST",
            "/config",
            {"mode": "result", "fail_rate": spec.fail_rate, "accept_delay": spec.accept_delay},
        )
        await backend_call("POST", "/reset")
        pids = {"worker": worker.pid() or 0, "backend": bench.backend_pid}
        pids.update({n: pid for n, pid in servers.pids().items() if n in ("redis", "smtp")})
        commands_before = metrics.redis_commands(servers.redis_url)
        meter = metrics.ProcessMeter(pids)
        meter.start()
        watcher, load_result = await measured_load(bench, spec, {**base, **env}, email, progress)
        meter.stop()
        commands_after = metrics.redis_commands(servers.redis_url)
        calls = await backend_call("GET", "/calls")
    finally:
        await asyncio.to_thread(worker.stop, lambda _: None)
    figures = outcome_figures(load_result.submits, watcher.received)
    figures.update(
        cost_figures(
            meter.cpu,
            meter.peak_rss,
            load_result.cpu_seconds,
            load_result.peak_rss,
            spec.jobs,
            ["worker", "redis"],
        )
    )
    figures["Redis commands/job"] = per_job(commands_after - commands_before, spec.jobs)
    figures.update(retry_figures(calls["calls"], None))
    figures["backend max in flight"] = float(calls["max_in_flight"])
    return RunResult(spec, figures)


async def run(bench: Bench, spec: RunSpec, progress: Progress) -> RunResult:
    if spec.system == "jobplane":
        return await run_jobplane(bench, spec, progress)
    return await run_celery(bench, spec, progress)
