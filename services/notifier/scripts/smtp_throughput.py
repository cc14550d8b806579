"""Mails per second to the local SMTP sink: a new connection per mail (``aiosmtplib.send``,
as the notifier did) against the notifier's pool of persistent connections.

    uv run --group bench python services/notifier/scripts/smtp_throughput.py \
        --mails 1000 --in-flight 8

Starts its own sink (``jobplane_local.smtp_sink``, a separate process) on ``--port`` with a
temporary mailbox, then alternates the two ways ``--runs`` times; prints mails/s and the CPU
per mail of the sending process and of the sink for each run, and the medians. The sink writes
and syncs two files per mail (a batch of mails at once), so on a slow disk it, not the sender,
bounds mails/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import aiosmtplib
import psutil
from jobplane_notifier.config import Settings
from jobplane_notifier.mailer import Mail, Mailer


def mail(n: int) -> Mail:
    return Mail(
        to=f"user-{n}@example.test",
        subject=f"Job thumbnail {n} completed",
        text="Your job completed.\n" * 10,
        html="<p>Your job completed.</p>" * 10,
        message_id=f"<bench.{n}.{time.time_ns()}@jobplane.test>",
        headers={"X-Jobplane-Job-Id": f"job-{n}"},
    )


async def load(
    send: Callable[[int], Awaitable[None]], mails: int, in_flight: int
) -> tuple[float, float]:
    numbers = iter(range(mails))

    async def worker() -> None:
        for n in numbers:
            await send(n)

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return time.perf_counter() - started, time.process_time() - cpu


async def per_mail_connection(
    settings: Settings, mails: int, in_flight: int
) -> tuple[float, float]:
    mailer = Mailer(settings)  # for build() only

    async def send(n: int) -> None:
        await aiosmtplib.send(
            mailer.build(mail(n)),
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            timeout=settings.smtp_timeout_seconds,
        )

    return await load(send, mails, in_flight)


async def pooled(settings: Settings, mails: int, in_flight: int) -> tuple[float, float]:
    mailer = Mailer(settings)
    try:

        async def send(n: int) -> None:
            await mailer.send(mail(n))

        return await load(send, mails, in_flight)
    finally:
        await mailer.aclose()


def discarding_sink(port: int) -> None:
    """An SMTP server that accepts and drops every message: the sender's cost alone."""
    from aiosmtpd.smtp import SMTP

    class Discard:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            return "250 OK"

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SMTP(Discard()), "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mails", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--port", type=int, default=8541)
    parser.add_argument(
        "--discard",
        action="store_true",
        help="a sink that drops every message instead of writing it to disk",
    )
    args = parser.parse_args()
    settings = Settings(
        smtp_host="127.0.0.1",
        smtp_port=args.port,
        concurrency=args.in_flight,
        smtp_connections=args.in_flight,
        mail_from="Jobplane <jobplane@jobplane.test>",
    )
    ways: dict[str, Callable[[Settings, int, int], Coroutine[Any, Any, tuple[float, float]]]] = {
        "connection per mail": per_mail_connection,
        "pooled connections": pooled,
    }
    rates: dict[str, list[float]] = {name: [] for name in ways}
    cpus: dict[str, list[float]] = {name: [] for name in ways}
    sink_cpus: dict[str, list[float]] = {name: [] for name in ways}
    with tempfile.TemporaryDirectory() as mailbox:
        command = [sys.executable, "-m", "jobplane_local.smtp_sink", "--port", str(args.port),
                   "--mailbox", mailbox]  # fmt: skip
        if args.discard:
            command = [sys.executable, __file__, "--serve-discarding", str(args.port)]
        sink = subprocess.Popen(command, stdout=subprocess.DEVNULL)  # noqa: S603
        try:
            wait_for_port(args.port)
            sink_process = psutil.Process(sink.pid)
            for run in range(args.runs):
                for name, way in ways.items():
                    sink_before = sum(sink_process.cpu_times()[:2])
                    elapsed, cpu = asyncio.run(way(settings, args.mails, args.in_flight))
                    sink_cpu = sum(sink_process.cpu_times()[:2]) - sink_before
                    rates[name].append(args.mails / elapsed)
                    cpus[name].append(cpu * 1000 / args.mails)
                    sink_cpus[name].append(sink_cpu * 1000 / args.mails)
                    print(
                        f"run {run + 1} {name:20} {rates[name][-1]:7.0f} mails/s "
                        f"{cpus[name][-1]:6.2f} ms client CPU/mail "
                        f"{sink_cpus[name][-1]:6.2f} ms sink CPU/mail",
                        flush=True,
                    )
        finally:
            sink.terminate()
            sink.wait()
    medians = {
        name: {
            "mails_per_s": round(statistics.median(rates[name])),
            "client_cpu_ms_per_mail": round(statistics.median(cpus[name]), 2),
            "sink_cpu_ms_per_mail": round(statistics.median(sink_cpus[name]), 2),
        }
        for name in ways
    }
    print(json.dumps({"mails": args.mails, "in_flight": args.in_flight, "median": medians}))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve-discarding"]:
        discarding_sink(int(sys.argv[2]))
    else:
        main()
