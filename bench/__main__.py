"""`make bench`: Jobplane and Celery + Redis doing the same work, side by side.

    uv run --group bench python -m bench [--jobs 1000] [--runs 3] [--in-flight 32]
        [--preload 100000] [--only jobplane|celery] [--quick] [--profile]

Same work both ways: each job is submitted (Jobplane: `POST /v1/jobs`; Celery: `delay()`),
posted to the same app backend (answers 200 with the result at once), and ends in one e-mail to
the same SMTP sink. Main runs alternate Jobplane / Celery (`--runs` each); the table gives each
system's median, the ratio Jobplane / Celery and every run's value. Then the scenarios of the
goals, `--runs` times each, alternating (medians): the gateway's accept latency at half the
maximum rate, and 10 % of backend calls failing at one submit rate for both systems, the lower
half rate (retry precision; its min and max are those of all runs); single runs of 2 and 4
dispatcher instances and a slow backend (200 ms to accept), the store preloaded with old jobs,
and the raw floor of the parts. With `--rates`, each system also runs open-loop at those submit
rates (accept latency, CPU per job and how busy the machine was, as the load grows). Figures
are printed and written to `bench/results/` (JSON and PNG); nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jobplane_local.service import Service
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench import floor, report, systems
from bench.figures import machine_share
from bench.infra import BenchServers, bench_config
from bench.stats import Figures, medians, over_runs

RESULTS = Path(__file__).resolve().parent / "results"

# Scenario figures that join the side-by-side table: (figure in the run, name in the table).
HALF_RATE = [
    ("accept p50 ms", "accept p50 ms at half the max rate"),
    ("accept p99 ms", "accept p99 ms at half the max rate"),
]
FAILING = [
    (f"retry lateness {q} ms", f"retry lateness {q} ms (10% failing, same rate)")
    for q in ("min", "p50", "p99", "max")
] + [
    ("retry released p50 ms", "retry service's own lateness p50 ms"),
    ("retry released p99 ms", "retry service's own lateness p99 ms"),
]
SLOW = [("jobs/s end to end", "jobs/s with a 200 ms backend")]


def pick(figures: Figures, names: list[tuple[str, str]]) -> Figures:
    return {new: figures[old] for old, new in names if old in figures}


def pick_runs(runs: Sequence[Figures], names: list[tuple[str, str]]) -> dict[str, list[float]]:
    """Each run's value of the figures ``pick`` takes from their summary."""
    return {new: [run.get(old, math.nan) for run in runs] for old, new in names}


console = Console(stderr=True)


def log(message: str) -> None:
    # Not wrapped at the console's width: one line per message, also in a log file.
    console.print(
        f"[dim]{datetime.now(UTC):%H:%M:%S}[/dim] {message}", highlight=False, soft_wrap=True
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000, help="jobs per run (default 1000)")
    parser.add_argument("--runs", type=int, default=3, help="main runs per system (default 3)")
    parser.add_argument("--in-flight", type=int, default=32, help="submits in flight (32)")
    parser.add_argument(
        "--preload",
        type=int,
        default=100_000,
        help="also run Jobplane with N old finished jobs stored first (100,000; 0: no)",
    )
    parser.add_argument("--only", choices=["jobplane", "celery"], help="one system only")
    parser.add_argument("--quick", action="store_true", help="100 jobs, 1 run: for development")
    parser.add_argument("--profile", action="store_true", help="py-spy on each service, 1 run")
    parser.add_argument(
        "--celery-pool", help="prefork:2, threads:32 or gevent:32; default: the best of them"
    )
    parser.add_argument(
        "--callback",
        action="store_true",
        help="the backend answers Jobplane 202 and posts the result back (Celery: 200 as ever)",
    )
    parser.add_argument("--no-scenarios", action="store_true", help="main runs (and floor) only")
    parser.add_argument(
        "--preload-only",
        action="store_true",
        help="only Jobplane with an empty and a preloaded store, --runs alternating pairs",
    )
    parser.add_argument(
        "--rates",
        type=parse_rates,
        default=(),
        help="also run each system open-loop at these submits/s, --runs times each "
        "(e.g. 40,80,130): accept latency and CPU per job as the load grows",
    )
    parser.add_argument("--report", type=Path, help="print a saved result (JSON) again and stop")
    parser.add_argument(
        "--keep-servers",
        action="store_true",
        help="leave the servers running (the next invocation restarts them)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs, args.runs = min(args.jobs, 100), 1
        args.preload = min(args.preload, 10_000)
    if args.jobs < 1 or args.runs < 1 or args.in_flight < 1:
        parser.error("--jobs, --runs and --in-flight must be at least 1")
    return args


def parse_rates(text: str) -> tuple[float, ...]:
    """``--rates``: submits per second, comma-separated, each above 0."""
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of rates: {text!r}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"rates must be above 0: {text!r}")
    return values


class Runner:
    def __init__(self, bench: systems.Bench, progress: Progress) -> None:
        self.bench = bench
        self.progress = progress

    async def __call__(self, spec: systems.RunSpec) -> systems.RunResult:
        task = self.progress.add_task(spec.label, total=spec.jobs, submitted=0)

        def update(mails: int, submitted: int) -> None:
            self.progress.update(task, completed=mails, submitted=submitted)

        began = time.monotonic()
        result = await systems.run(self.bench, spec, update)
        self.progress.update(task, completed=spec.jobs)
        f = result.figures
        log(
            f"{spec.label}: {f['jobs/s end to end']:.1f} jobs/s, submit→e-mail p50 "
            f"{f['submit→e-mail p50 ms']:.0f} ms, accept p99 {f['accept p99 ms']:.1f} ms, "
            f"CPU {f['CPU ms/job platform']:.1f} ms/job, "
            f"{f['e-mails missing']:.0f} missing ({time.monotonic() - began:.0f}s)"
        )
        return result


async def compare_preload(
    run: Runner, spec: Callable[..., systems.RunSpec], args: argparse.Namespace
) -> dict[str, Figures]:
    """Jobplane with an empty store and with ``--preload`` old finished jobs stored first:
    alternating pairs, the medians of ``--runs`` each, so the machine's noise falls on both
    sides alike."""
    empty: list[Figures] = []
    preloaded: list[Figures] = []
    for n in range(args.runs):
        result = await run(spec(system="jobplane", scenario=f"preload 0, {n + 1}"))
        empty.append(result.figures)
        result = await run(
            spec(system="jobplane", scenario=f"preload {args.preload}, {n + 1}",
                 preload=args.preload)
        )  # fmt: skip
        preloaded.append(result.figures)
    return {
        "jobplane preload 0": medians(empty),
        f"jobplane preload {args.preload:,}": medians(preloaded),
    }


async def repeated(
    run: Runner,
    spec: Callable[[str, int], systems.RunSpec],
    want: Sequence[str],
    runs: int,
) -> dict[str, list[Figures]]:
    """``runs`` runs of each system (``spec(system, run number)``), the systems alternating
    as in the main runs, so that the machine's noise falls on both alike."""
    results: dict[str, list[Figures]] = {system: [] for system in want}
    for n in range(1, runs + 1):
        for system in want:
            results[system].append((await run(spec(system, n))).figures)
    return results


async def by_rate(
    run: Runner,
    spec: Callable[..., systems.RunSpec],
    want: Sequence[str],
    submit_rates: Sequence[float],
    runs: int,
) -> dict[str, Figures]:
    """Each system open-loop at each rate, ``runs`` times (the systems alternate), medians.
    The half-rate scenario puts each system at half of its own maximum, so at different loads;
    at the same rates they compare directly, and the CPU per job below full load shows what
    batching saves at full load."""
    results: dict[str, list[Figures]] = {}
    for n in range(runs):
        for rate in submit_rates:
            for system in want:
                result = await run(spec(system=system, scenario=f"{rate:g}/s, {n + 1}", rate=rate))
                figures = result.figures
                figures["machine busy %"] = machine_share(figures, os.cpu_count() or 1)
                results.setdefault(f"{system} at {rate:g}/s", []).append(figures)
    return {f"{label} (median of {runs})": medians(each) for label, each in results.items()}


def pool_choice(text: str) -> tuple[str, int]:
    pool, _, size = text.partition(":")
    return pool, int(size or (2 if pool == "prefork" else 32))


async def bench_main(args: argparse.Namespace) -> dict[str, Any]:
    servers = BenchServers(bench_config())
    started = datetime.now(UTC)
    meta: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "command": "python -m bench " + shlex.join(sys.argv[1:]),
        "load_before": os.getloadavg(),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "jobs": args.jobs,
        "in_flight": args.in_flight,
        "runs": args.runs,
        # Dispatchers, notifier and Celery's worker run at this nice (JOBPLANE_BACKGROUND_NICE).
        "background_nice": servers.config.background_nice,
    }
    log(f"servers on their bench ports under {servers.config.local_dir}")
    bench = systems.Bench(servers, RESULTS, log)
    main: dict[str, list[Figures]] = {}
    scenario_results: dict[str, Figures] = {}
    hot: dict[str, Any] = {}
    headline: dict[str, Figures] = {"jobplane": {}, "celery": {}}
    headline_runs: dict[str, dict[str, list[float]]] = {"jobplane": {}, "celery": {}}

    def add_headline(
        system: str, summary: Figures, runs: Sequence[Figures], names: list[tuple[str, str]]
    ) -> None:
        """A scenario's figures for the side-by-side table: its summary and each run's value."""
        headline[system].update(pick(summary, names))
        headline_runs[system].update(pick_runs(runs, names))

    columns = (
        TextColumn("{task.description:<34}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("e-mails, {task.fields[submitted]} submitted"), TimeElapsedColumn(),
    )  # fmt: skip
    backend: Service | None = None
    try:
        # Servers an earlier invocation left (--keep-servers, or killed) are started afresh:
        # a run measures the code checked out now (the SMTP sink is ours too).
        await asyncio.to_thread(servers.down, log)
        await asyncio.to_thread(servers.up, log)
        await asyncio.to_thread(
            bench.cleanup.remove_leftovers, servers.kafka_bootstrap, servers.mongodb_uri
        )
        backend = await asyncio.to_thread(systems.start_backend, bench)
        with Progress(*columns, console=console) as progress:
            run = Runner(bench, progress)
            spec = functools.partial(
                systems.RunSpec,
                jobs=args.jobs,
                in_flight=args.in_flight,
                mode="callback" if args.callback else "result",
            )
            want = [s for s in ("jobplane", "celery") if args.only in (None, s)]
            if args.preload_only:
                want = []
                scenario_results.update(await compare_preload(run, spec, args))

            pool, size = pool_choice(args.celery_pool or "prefork:2")
            if "celery" in want and args.celery_pool is None:
                sweep = {}
                for choice in ("prefork:2", "threads:32", "gevent:32"):
                    p, n = pool_choice(choice)
                    result = await run(
                        spec(
                            system="celery",
                            scenario=f"pool {choice}",
                            pool=p,
                            pool_size=n,
                            jobs=max(50, args.jobs // 4),  # enough to rank the pools
                        )
                    )
                    sweep[choice] = result.figures["jobs/s end to end"]
                    scenario_results[f"celery pool {choice}"] = result.figures
                pool, size = pool_choice(max(sweep, key=lambda c: sweep[c]))
                log(f"celery: the {pool} pool with {size} wins ({sweep})")
            meta["celery_pool"] = f"{pool}:{size}"
            spec = functools.partial(spec, pool=pool, pool_size=size)

            # One unmeasured run of each system first: on this machine's disk (ext4 with
            # `discard`) writes into blocks freed shortly before cost the kernel more (the SMTP
            # sink's CPU per mail: 0.5 -> 1.7 ms, `bench/README.md`). The runs delete nothing
            # until the end (`bench.cleanup`), but the invocation before may have: this run takes
            # that toll, not the first measured run (which used to be always Jobplane's).
            if not args.quick:
                for system in want:
                    await run(spec(system=system, scenario="warm-up, unmeasured"))
            for n in range(args.runs):
                for system in want:
                    result = await run(spec(system=system, scenario=f"main {n + 1}"))
                    main.setdefault(system, []).append(result.figures)

            if not args.no_scenarios:
                # The goals' scenarios run --runs times too (one run's accept p99 at half rate
                # ranged 26-126 ms for the same code): medians, and the extremes of lateness.
                half = {s: medians(main[s])["jobs/s end to end"] / 2 for s in want}
                half_rate = await repeated(
                    run, lambda s, n: spec(system=s, scenario=f"half rate {n}", rate=half[s]),
                    want, args.runs,
                )  # fmt: skip
                for system, runs in half_rate.items():
                    figures = medians(runs)
                    label = f"{system} accept at {half[system]:.0f}/s (median of {len(runs)})"
                    scenario_results[label] = figures
                    add_headline(system, figures, runs, HALF_RATE)
                # Retry precision at one pace for all: the same work at the same submit rate,
                # the lowest half rate. It must measure the scheduler, not the time a retry
                # waits in a backlog behind new jobs; and a faster system's own half rate can
                # be more than its failing workload sustains (at half rate nothing batches,
                # and a failed call costs more than a success; bench/README.md, "Retry
                # precision at one pace").
                pace = min(half.values())
                failing = await repeated(
                    run,
                    lambda s, n: spec(system=s, scenario=f"10% failing {n}", fail_rate=0.1,
                                      rate=pace),
                    want, args.runs,
                )  # fmt: skip
                for system, runs in failing.items():
                    figures = over_runs(
                        runs,
                        lowest=[f"retry {what} min ms" for what in ("lateness", "released")],
                        highest=[f"retry {what} max ms" for what in ("lateness", "released")],
                    )
                    label = f"{system} 10% failing at {pace:.0f}/s (median of {len(runs)})"
                    scenario_results[label] = figures
                    add_headline(system, figures, runs, FAILING)
                for system in want:
                    result = await run(spec(system=system, scenario="slow", accept_delay=0.2))
                    scenario_results[f"{system} backend 200 ms"] = result.figures
                    add_headline(system, result.figures, [result.figures], SLOW)
                if "jobplane" in want:
                    scenario_results["jobplane 1 dispatcher"] = medians(main["jobplane"])
                    for count in (2, 4):
                        result = await run(
                            spec(system="jobplane", scenario=f"dispatchers {count}",
                                 dispatchers=count)
                        )  # fmt: skip
                        scenario_results[f"jobplane {count} dispatchers"] = result.figures
                    if args.preload:
                        scenario_results.update(await compare_preload(run, spec, args))
            if args.rates:
                scenario_results.update(await by_rate(run, spec, want, args.rates, args.runs))
            if args.profile and "jobplane" in want:
                result = await run(spec(system="jobplane", scenario="profiled", profile=True))
                hot = {name: dataclasses.asdict(spots) for name, spots in result.hot_spots.items()}
        log("raw floor of the parts")
        floor_figures = await floor.measure(servers, max(100, args.jobs // 2))
    finally:
        if backend is not None:
            await asyncio.to_thread(backend.stop, lambda _: None)
        await asyncio.to_thread(bench.cleanup.run)
        if not args.keep_servers:
            await asyncio.to_thread(servers.down, log)
    meta["load_after"] = os.getloadavg()
    meta["seconds"] = (datetime.now(UTC) - started).total_seconds()
    return report.document(
        meta, main, headline, scenario_results, floor_figures, hot, headline_runs=headline_runs
    )


def print_report(doc: dict[str, Any]) -> None:
    meta = doc["meta"]
    out = Console(width=250, highlight=False, soft_wrap=True)
    out.print(f"\nJobplane vs Celery + Redis — {meta['command']}", highlight=False)
    out.print(
        f"{meta['machine']}, Python {meta['python']}; load average before "
        f"{', '.join(f'{v:.2f}' for v in meta['load_before'])}, after "
        f"{', '.join(f'{v:.2f}' for v in meta['load_after'])}; {meta['jobs']} jobs/run, "
        f"{meta['in_flight']} in flight; Celery pool {meta.get('celery_pool')}; background "
        f"work at nice {meta.get('background_nice', 0)}",
        highlight=False,
    )
    main = doc["main"]
    lines = report.side_by_side(
        main.get("jobplane", {}).get("runs", []),
        main.get("celery", {}).get("runs", []),
        doc["headline"],
        doc.get("headline_runs"),
    )
    out.print("\n" + "\n".join(lines), highlight=False)
    if doc["scenarios"]:
        out.print("\n" + "\n".join(report.scenarios(doc["scenarios"])), highlight=False)
    out.print("\n" + "\n".join(report.floor_table(doc["floor"])), highlight=False)
    for name, spots in doc["hot_spots"].items():
        out.print(f"\nhot spots of {name} ({spots['samples']} samples, {spots['idle']} idle):")
        for frame, count in spots["self_time"]:
            out.print(
                f"  self {100 * count / max(1, spots['samples']):5.1f}%  {frame}", highlight=False
            )
        for frame, count in spots["inclusive"]:
            out.print(
                f"  incl {100 * count / max(1, spots['samples']):5.1f}%  {frame}", highlight=False
            )


def main() -> None:
    args = parse_args()
    if args.report:
        print_report(json.loads(args.report.read_text()))
        return
    doc = asyncio.run(bench_main(args))
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    json_path = RESULTS / f"bench-{stamp}.json"
    png_path = RESULTS / f"bench-{stamp}.png"
    report.write_json(json_path, doc)
    report.plot(png_path, doc)
    print_report(doc)
    print(f"\nwritten: {json_path}\n         {png_path}")


if __name__ == "__main__":
    main()
