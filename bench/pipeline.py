"""Benchmark of the whole pipeline, side by side with the raw Kafka floor it is built on.

    uv run python -m bench.pipeline --jobs 200 --runs 3

One platform instance (gateway, dispatcher, retry, notifier, each as an asyncio task in this
process, as the end-to-end tests run them) against the local Kafka, FerretDB and SMTP sink,
with a unique topic prefix and database, and a fast app backend over real HTTP. Each pipeline
run registers an app and a user, submits N jobs through the gateway's HTTP API with bounded
client concurrency, and times every job from its submit to its ``job.completed`` event (seen
by a consumer of that topic) and to its success e-mail in the SMTP sink's mailbox (the sink's
receive time). Each baseline run produces N messages to a fresh topic and consumes them in a
consumer group. Runs alternate; the report gives the median of each figure and every run's
value. It prints figures and asserts nothing about them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import re
import shlex
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiokafka
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from jobplane.topics import Topics
from jobplane_dispatcher.config import Settings as DispatcherSettings
from jobplane_dispatcher.main import serve as serve_dispatcher
from jobplane_gateway.config import Settings as GatewaySettings
from jobplane_gateway.main import serve as serve_gateway
from jobplane_local.mailbox import read_mail
from jobplane_local.testing import Infra, infra_from_env
from jobplane_notifier.config import Settings as NotifierSettings
from jobplane_notifier.main import serve as serve_notifier
from jobplane_retry.config import Settings as RetrySettings
from jobplane_retry.main import serve as serve_retry
from pydantic import SecretStr
from pymongo import MongoClient

from bench.backend import FastBackend, free_port
from bench.baseline import create_topic, run_baseline
from bench.stats import latency_figures, median

ADMIN_KEY = "bench-admin-key"
JOB_ID_IN_MAIL = re.compile(r"Job ID:\s*(\S+)")  # user_success/en.txt


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- watching the outcomes -------------------------------------------------------------------


class CompletedWatcher:
    """Notes when each job's ``job.completed`` event reaches a plain consumer (keyed by job id)."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.partitions = [TopicPartition(topic, p) for p in range(partitions)]
        self.seen: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start at the topic's current end: only what comes after counts."""
        await self.consumer.start()
        self.consumer.assign(self.partitions)
        await self.consumer.seek_to_end(*self.partitions)
        for tp in self.partitions:
            await self.consumer.position(tp)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=200)
            now = time.time()
            for records in batches.values():
                for record in records:
                    self.seen.setdefault(record.key.decode(), now)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.consumer.stop()


class MailWatcher:
    """Success e-mails to one address, by job id, with the SMTP sink's receive time.

    Only files that appeared since it was created are parsed (the shared mailbox grows with
    every test run), with ``jobplane_local.mailbox.read_mail``.
    """

    def __init__(self, directory: Path, address: str) -> None:
        self.directory = directory
        self.address = address.lower()
        self.received: dict[str, float] = {}
        self.others = 0  # mails to this address without a job id (should stay 0)
        self._known = self._names()

    def _names(self) -> set[str]:
        if not self.directory.is_dir():
            return set()
        with os.scandir(self.directory) as entries:
            return {
                e.name for e in entries if e.name.endswith(".json") and not e.name.startswith(".")
            }

    def poll(self) -> None:
        names = self._names()
        for name in sorted(names - self._known):
            mail = read_mail(self.directory / name)
            if self.address not in (r.lower() for r in mail.rcpt_tos):
                continue
            match = JOB_ID_IN_MAIL.search(mail.text())
            if match is None or mail.received_at is None:
                self.others += 1
                continue
            self.received.setdefault(match.group(1), mail.received_at.timestamp())
        self._known = names


# --- the platform ----------------------------------------------------------------------------


@dataclass
class Platform:
    infra: Infra
    prefix: str
    partitions: int
    http: httpx.AsyncClient
    backend: FastBackend
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def topics(self) -> Topics:
        return Topics(self.prefix)

    @property
    def database(self) -> str:
        return self.prefix.rstrip(".").replace(".", "_")

    async def register(self, app_concurrency: int) -> tuple[dict[str, str], str, str]:
        """A new app and user: (the app's auth headers, user id, user e-mail)."""
        app_id = f"bench-{uuid.uuid4().hex[:10]}"
        response = await self.http.post(
            "/v1/apps",
            json={
                "app_id": app_id,
                "backend_url": self.backend.url,
                "default_timeout_seconds": 60,
                "admin_emails": [f"admin@{app_id}.example.com"],
                "max_concurrency": app_concurrency,
            },
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )
        response.raise_for_status()
        headers = {"Authorization": f"Bearer {response.json()['api_key']}"}
        user_id = f"user-{uuid.uuid4().hex[:8]}"
        email = f"{user_id}@{app_id}.example.com"
        response = await self.http.put(
            f"/v1/users/{user_id}", json={"email": email, "language": "en"}, headers=headers
        )
        response.raise_for_status()
        return headers, user_id, email


def service_coroutines(
    infra: Infra, prefix: str, partitions: int, gateway_port: int
) -> list[Coroutine[Any, Any, None]]:
    common: dict[str, Any] = {
        "kafka_bootstrap_servers": infra.kafka_bootstrap,
        "mongodb_uri": infra.mongodb_uri,
        "mongodb_database": prefix.rstrip(".").replace(".", "_"),
        "topic_prefix": prefix,
        "topic_partitions": partitions,
        "log_level": "WARNING",
    }
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    return [
        serve_gateway(
            GatewaySettings(
                **common,
                admin_api_key=SecretStr(ADMIN_KEY),
                host="127.0.0.1",
                port=gateway_port,
                public_url=gateway_url,
            )
        ),
        serve_dispatcher(
            DispatcherSettings(
                **common, group_id=f"{prefix}dispatcher", gateway_public_url=gateway_url
            )
        ),
        serve_retry(
            RetrySettings(
                **common,
                router_group_id=f"{prefix}retry-router",
                tiers_group_id=f"{prefix}retry-tiers",
            )
        ),
        serve_notifier(
            NotifierSettings(
                **common,
                group_id=f"{prefix}notifier",
                smtp_host=infra.smtp_host,
                smtp_port=infra.smtp_port,
            )
        ),
    ]


async def eventually(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.1)


# --- one pipeline run ------------------------------------------------------------------------


@dataclass(frozen=True)
class Submitted:
    job_id: str
    started: float
    answered: float


async def run_pipeline(
    plat: Platform, *, jobs: int, concurrency: int, app_concurrency: int, wait_s: float
) -> dict[str, float]:
    headers, user_id, email = await plat.register(app_concurrency)
    completed = CompletedWatcher(plat.infra.kafka_bootstrap, plat.topics.completed, plat.partitions)
    await completed.start()
    mails = MailWatcher(plat.infra.mail_dir, email)
    submitted: list[Submitted] = []
    rejected = 0
    slots = asyncio.Semaphore(concurrency)

    async def submit(n: int) -> None:
        nonlocal rejected
        async with slots:
            started = time.time()
            response = await plat.http.post(
                "/v1/jobs",
                json={"user_id": user_id, "job_type": "thumbnail", "payload": {"n": n}},
                headers=headers,
            )
            answered = time.time()
        if response.status_code == 202:
            submitted.append(Submitted(response.json()["job_id"], started, answered))
        else:
            rejected += 1
            log(f"submit answered {response.status_code}: {response.text[:200]}")

    try:
        first_submit = time.time()
        await asyncio.gather(*(submit(n) for n in range(jobs)))
        ids = {s.job_id for s in submitted}
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            mails.poll()
            if ids <= completed.seen.keys() and ids <= mails.received.keys():
                break
            await asyncio.sleep(0.2)
        else:
            log(
                f"timed out after {wait_s:.0f}s: {len(ids - completed.seen.keys())} jobs not "
                f"completed, {len(ids - mails.received.keys())} e-mails missing"
            )
    finally:
        await completed.stop()

    to_completion = [
        completed.seen[s.job_id] - s.started for s in submitted if s.job_id in completed.seen
    ]
    to_mail = [
        mails.received[s.job_id] - s.started for s in submitted if s.job_id in mails.received
    ]
    last_completion = max((completed.seen[i] for i in ids if i in completed.seen), default=math.nan)
    last_mail = max((mails.received[i] for i in ids if i in mails.received), default=math.nan)
    last_answer = max((s.answered for s in submitted), default=math.nan)
    return {
        **latency_figures("submit (202)", [s.answered - s.started for s in submitted]),
        **latency_figures("submit→job.completed", to_completion),
        **latency_figures("submit→e-mail", to_mail),
        "submits/s (202s)": len(submitted) / (last_answer - first_submit),
        "jobs/s (to last job.completed)": len(to_completion) / (last_completion - first_submit),
        "jobs/s (to last e-mail)": len(to_mail) / (last_mail - first_submit),
        "all e-mails in after s": last_mail - first_submit,
        "rejected submits": float(rejected),
        "not completed": float(len(ids) - len(to_completion)),
        "e-mails missing": float(len(ids) - len(to_mail)),
    }


# --- the report ------------------------------------------------------------------------------


def table(title: str, runs: Sequence[dict[str, float]]) -> list[str]:
    names = list(runs[0]) if runs else []
    width = max((len(n) for n in names), default=10) + 2
    header = f"{title:<{width}}{'median':>10}" + "".join(
        f"{f'run {i}':>10}" for i in range(1, len(runs) + 1)
    )
    lines = [header, "-" * len(header)]
    for name in names:
        values = [run[name] for run in runs]
        lines.append(
            f"{name:<{width}}{median(values):>10.1f}" + "".join(f"{v:>10.1f}" for v in values)
        )
    return lines


def ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def report(pipeline: Sequence[dict[str, float]], baseline: Sequence[dict[str, float]]) -> None:
    print()
    print("\n".join(table("pipeline (ms, jobs/s, s, counts)", pipeline)))
    print()
    print("\n".join(table("baseline (ms, msgs/s, counts)", baseline)))
    print()

    def med(runs: Sequence[dict[str, float]], name: str) -> float:
        return median([run[name] for run in runs])

    pairs = [
        (
            "throughput: jobs/s (to job.completed) / msgs/s",
            "jobs/s (to last job.completed)",
            "msgs/s",
        ),
        ("throughput: jobs/s (to e-mail) / msgs/s", "jobs/s (to last e-mail)", "msgs/s"),
        (
            "p50 latency: submit→job.completed / produce→consume",
            "submit→job.completed p50 ms",
            "produce→consume p50 ms",
        ),
        (
            "p50 latency: submit→e-mail / produce→consume",
            "submit→e-mail p50 ms",
            "produce→consume p50 ms",
        ),
    ]
    width = max(len(p[0]) for p in pairs) + 2
    header = f"{'pipeline / baseline':<{width}}{'medians':>10}" + "".join(
        f"{f'run {i}':>10}" for i in range(1, len(pipeline) + 1)
    )
    print(header)
    print("-" * len(header))
    for label, mine, floor in pairs:
        per_run = [ratio(p[mine], b[floor]) for p, b in zip(pipeline, baseline, strict=True)]
        line = f"{label:<{width}}{ratio(med(pipeline, mine), med(baseline, floor)):>10.3f}"
        print(line + "".join(f"{r:>10.3f}" for r in per_run))
    print()
    print("medians are per figure across runs; 'medians' ratio = median(pipeline)/median(baseline)")


def print_environment(args: argparse.Namespace, infra: Infra, prefix: str) -> None:
    mongo: MongoClient[dict[str, Any]] = MongoClient(
        infra.mongodb_uri, serverSelectionTimeoutMS=5000
    )
    try:
        info = mongo.server_info()
    finally:
        mongo.close()
    store = f"wire version {info.get('version', '?')}"
    if "ferretdbVersion" in info:
        store += f", FerretDB {info['ferretdbVersion']}"

    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print("Jobplane pipeline benchmark")
    print(f"command:     uv run python -m bench.pipeline {shlex.join(sys.argv[1:])}".rstrip())
    print(f"python:      {platform.python_version()} ({sys.executable})")
    print(f"machine:     {platform.platform()}, {os.cpu_count()} CPUs, load avg {load}")
    print(f"kafka:       {infra.kafka_bootstrap} (aiokafka {aiokafka.__version__})")
    print(f"store:       {infra.mongodb_uri} {store}, database {prefix.rstrip('.')}")
    print(f"smtp sink:   {infra.smtp_host}:{infra.smtp_port}, mailbox {infra.mail_dir}")
    print(
        f"setup:       4 services in-process (asyncio tasks of this one process, with the "
        f"backend and the client), topic prefix {prefix!r}, {args.partitions} partitions/topic"
    )
    print(
        f"load:        {args.jobs} jobs/run, client concurrency {args.concurrency}, app "
        f"max_concurrency {args.app_concurrency}, {args.runs} runs alternating pipeline/baseline"
    )
    print(
        "baseline:    idempotent aiokafka producer (acks=all, linger 2 ms) -> 1 topic -> "
        "consumer group (read_committed, commit per batch), same concurrency; the idle "
        "platform keeps running meanwhile"
    )
    sys.stdout.flush()


# --- main ------------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> None:
    infra = infra_from_env(log=log)
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    print_environment(args, infra, prefix)

    backend = FastBackend()
    backend_server, backend_task = await backend.start()
    gateway_port = free_port()
    limits = httpx.Limits(
        max_connections=args.concurrency, max_keepalive_connections=args.concurrency
    )
    http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway_port}", timeout=60, limits=limits)
    plat = Platform(infra, prefix, args.partitions, http, backend)
    pipeline_runs: list[dict[str, float]] = []
    baseline_runs: list[dict[str, float]] = []
    try:
        plat.tasks = [
            asyncio.create_task(c)
            for c in service_coroutines(infra, prefix, args.partitions, gateway_port)
        ]

        async def gateway_up() -> bool:
            for task in plat.tasks:
                if task.done():
                    task.result()  # a service that died at start-up stops the benchmark
            try:
                return (await http.get("/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(gateway_up, 60, "the gateway did not come up")
        # Warm-up: every consumer group has joined once a few jobs got their e-mails.
        log("warming up (consumer groups join, connections open)")
        await run_pipeline(
            plat, jobs=5, concurrency=5, app_concurrency=args.app_concurrency, wait_s=60
        )
        for run in range(1, args.runs + 1):
            log(f"run {run}/{args.runs}: pipeline")
            figures = await run_pipeline(
                plat,
                jobs=args.jobs,
                concurrency=args.concurrency,
                app_concurrency=args.app_concurrency,
                wait_s=args.timeout,
            )
            pipeline_runs.append(figures)
            log(f"run {run}/{args.runs}: baseline")
            topic = f"{prefix}baseline.{run}"
            await create_topic(infra.kafka_bootstrap, topic, args.partitions)
            baseline_runs.append(
                await run_baseline(
                    infra.kafka_bootstrap,
                    topic,
                    f"{prefix}baseline-{run}",
                    messages=args.jobs,
                    concurrency=args.concurrency,
                    wait_s=args.timeout,
                )
            )
        if backend.callback_problems:
            log(f"{len(backend.callback_problems)} callbacks not recorded, e.g.:")
            for problem in backend.callback_problems[:5]:
                log(f"  {problem}")
        report(pipeline_runs, baseline_runs)
    finally:
        log("cleaning up")
        for task in plat.tasks:
            task.cancel()
        await asyncio.gather(*plat.tasks, return_exceptions=True)
        await http.aclose()
        await backend.stop(backend_server, backend_task)
        await delete_topics(infra.kafka_bootstrap, prefix)
        mongo: MongoClient[dict[str, Any]] = MongoClient(infra.mongodb_uri)
        try:
            mongo.drop_database(plat.database)
        finally:
            mongo.close()


async def delete_topics(bootstrap: str, prefix: str) -> None:
    """Delete the topics this benchmark created (those with its unique prefix)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        ours = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if ours:
            with contextlib.suppress(Exception):
                await admin.delete_topics(ours)
    finally:
        await admin.close()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pipeline", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    parser.add_argument("--jobs", type=int, default=200, help="jobs (and messages) per run")
    parser.add_argument("--runs", type=int, default=3, help="pipeline/baseline pairs")
    parser.add_argument("--concurrency", type=int, default=32, help="client requests in flight")
    parser.add_argument(
        "--app-concurrency", type=int, default=16, help="the app's max_concurrency (API default)"
    )
    parser.add_argument("--partitions", type=int, default=3, help="partitions per topic")
    parser.add_argument(
        "--timeout", type=float, default=180, help="seconds a run may take to finish"
    )
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.runs < 1 or args.concurrency < 1:
        parser.error("--jobs, --runs and --concurrency must be at least 1")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
