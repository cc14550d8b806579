"""The report: a table for the terminal, a JSON document and a PNG plot."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.stats import Figures, medians, ratio

# The side-by-side table: (figure, lower is better?) in the order they are printed.
MAIN_FIGURES = [
    "jobs/s end to end",
    "submit→e-mail p50 ms",
    "submit→e-mail p95 ms",
    "submit→e-mail p99 ms",
    "accept p50 ms",
    "accept p99 ms",
    "CPU ms/job platform",
    "CPU ms/job all but backend",
    "CPU ms/job all processes",
    "e-mails missing",
    "rejected submits",
]
TOTALS = ("CPU ms/job platform", "CPU ms/job all but backend", "CPU ms/job all processes")
# The scenarios table: (column header, figure) — one row per scenario run.
SCENARIO_FIGURES = [
    ("jobs/s", "jobs/s end to end"),
    ("e2e p50 ms", "submit→e-mail p50 ms"),
    ("e2e p99 ms", "submit→e-mail p99 ms"),
    ("accept p50", "accept p50 ms"),
    ("accept p99", "accept p99 ms"),
    ("CPU ms/job", "CPU ms/job platform"),
    ("machine busy %", "machine busy %"),
    ("retries", "retry lateness count"),
    ("late min", "retry lateness min ms"),
    ("late p50", "retry lateness p50 ms"),
    ("late p99", "retry lateness p99 ms"),
    ("late max", "retry lateness max ms"),
    ("released p50", "retry released p50 ms"),
    ("released p99", "retry released p99 ms"),
    ("backend in flight", "backend max in flight"),
    ("missing", "e-mails missing"),
]


def fmt(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    if abs(value) >= 100 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def grid(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A plain text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for n, row in enumerate([header, *rows]):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def side_by_side(
    jobplane: Sequence[Figures],
    celery: Sequence[Figures],
    headline: Mapping[str, Figures] | None = None,
    headline_runs: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
) -> list[str]:
    """Medians of each system's runs, the ratio Jobplane / Celery, and every run's value; then
    the scenarios' key figures (`headline`: system → the summary of its scenario runs;
    `headline_runs`: system → each run's value, absent in results saved before they were
    kept, which had one run of each scenario)."""
    mj, mc = medians(jobplane), medians(celery)
    names = [n for n in MAIN_FIGURES if n in mj or n in mc]
    extra = sorted(
        n for n in {*mj, *mc} - set(names)
        if n.startswith(("CPU ms/job", "peak RSS", "store ", "Kafka", "Redis"))
    )  # fmt: skip
    rows = []
    for name in [*names, *extra]:
        a, b = mj.get(name, math.nan), mc.get(name, math.nan)
        runs_j = " ".join(fmt(r.get(name, math.nan)) for r in jobplane)
        runs_c = " ".join(fmt(r.get(name, math.nan)) for r in celery)
        rows.append([name, fmt(a), fmt(b), fmt(ratio(a, b)), runs_j, runs_c])
    headline = headline or {}
    hj, hc = headline.get("jobplane", {}), headline.get("celery", {})
    runs = headline_runs or {}
    rj, rc = runs.get("jobplane", {}), runs.get("celery", {})

    def each(values: Sequence[float] | None) -> str:
        if headline_runs is None:
            return "(1 run)"
        return " ".join(fmt(v) for v in values) if values is not None else "-"  # did not run

    for name in dict.fromkeys([*hj, *hc]):
        a, b = hj.get(name, math.nan), hc.get(name, math.nan)
        rows.append(
            [name, fmt(a), fmt(b), fmt(ratio(a, b)), each(rj.get(name)), each(rc.get(name))]
        )
    header = ["median of runs", "Jobplane", "Celery", "J/C", "Jobplane runs", "Celery runs"]
    return grid(header, rows)


def scenarios(results: Mapping[str, Figures]) -> list[str]:
    """One row per scenario run (label → figures); retry lateness in ms."""
    columns = [(h, n) for h, n in SCENARIO_FIGURES if any(n in f for f in results.values())]
    rows = [
        [label, *(fmt(figures.get(name, math.nan)) for _, name in columns)]
        for label, figures in results.items()
    ]
    return grid(["scenario", *(h for h, _ in columns)], rows)


def floor_table(floor: Mapping[str, float]) -> list[str]:
    return grid(["raw floor of the parts", "per second"], [[k, fmt(v)] for k, v in floor.items()])


def document(
    meta: Mapping[str, Any],
    main: Mapping[str, Sequence[Figures]],
    headline: Mapping[str, Figures],
    scenario_results: Mapping[str, Figures],
    floor: Mapping[str, float],
    hot_spots: Mapping[str, Any],
    *,
    headline_runs: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
) -> dict[str, Any]:
    return {
        "meta": dict(meta),
        "main": {
            system: {"runs": list(runs), "median": medians(runs)} for system, runs in main.items()
        },
        "headline": dict(headline),
        "headline_runs": dict(headline_runs or {}),
        "scenarios": dict(scenario_results),
        "floor": dict(floor),
        "hot_spots": dict(hot_spots),
    }


def write_json(path: Path, doc: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)

    def clean(value: Any) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    path.write_text(json.dumps(clean(doc), indent=2, ensure_ascii=False) + "\n")


def plot(path: Path, doc: Mapping[str, Any]) -> None:
    """Throughput, latency, CPU per job (by process) and the scenarios, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    main = doc["main"]
    systems = [s for s in ("jobplane", "celery") if s in main]
    colours = {"jobplane": "tab:blue", "celery": "tab:green"}
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    ax = axes[0][0]
    values = [main[s]["median"].get("jobs/s end to end") or 0 for s in systems]
    ax.bar(systems, values, color=[colours[s] for s in systems])
    ax.set_title("jobs/s, first submit to last e-mail (median)")
    ax = axes[0][1]
    quantiles = ["p50", "p95", "p99"]
    for i, s in enumerate(systems):
        med = main[s]["median"]
        ax.bar(
            [q_i + i * 0.4 for q_i in range(3)],
            [(med.get(f"submit→e-mail {q} ms") or 0) / 1000 for q in quantiles],
            width=0.4, label=s, color=colours[s],
        )  # fmt: skip
    ax.set_xticks([q_i + 0.2 for q_i in range(3)], quantiles)
    ax.set_title("submit → e-mail, seconds")
    ax.legend()
    ax = axes[1][0]
    for i, s in enumerate(systems):
        med = main[s]["median"]
        parts = {
            k.removeprefix("CPU ms/job "): v
            for k, v in med.items()
            if k.startswith("CPU ms/job ") and k not in TOTALS and v is not None
        }
        bottom = 0.0
        for name, value in sorted(parts.items()):
            ax.bar(i, value, bottom=bottom, color=colours[s], edgecolor="white")
            if value > 0.5:
                ax.text(i, bottom + value / 2, f"{name} {value:.1f}", ha="center", fontsize=7)
            bottom += value
    ax.set_xticks(range(len(systems)), systems)
    ax.set_title("CPU ms per job, by process")
    ax = axes[1][1]
    labels = list(doc["scenarios"])
    ax.barh(
        labels,
        [doc["scenarios"][lb].get("jobs/s end to end") or 0 for lb in labels],
        color=[colours["celery" if lb.startswith("celery") else "jobplane"] for lb in labels],
    )
    ax.set_title("jobs/s by scenario")
    ax.tick_params(axis="y", labelsize=7)
    fig.suptitle(f"Jobplane vs Celery — {doc['meta'].get('started', '')}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
