"""Small statistics helpers: percentiles, medians of run figures, ratios."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence

Figures = dict[str, float]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation; NaN if there are no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_figures(
    name: str, seconds: Sequence[float], quantiles: Iterable[int] = (50, 95, 99)
) -> Figures:
    """``{name} pNN ms`` in milliseconds."""
    return {f"{name} p{q} ms": percentile(seconds, q) * 1000 for q in quantiles}


def lateness_figures(name: str, seconds: Sequence[float]) -> Figures:
    """min, p50, p99 and max in milliseconds, and how many there were."""
    return {
        f"{name} min ms": min(seconds, default=math.nan) * 1000,
        f"{name} p50 ms": percentile(seconds, 50) * 1000,
        f"{name} p99 ms": percentile(seconds, 99) * 1000,
        f"{name} max ms": max(seconds, default=math.nan) * 1000,
        f"{name} count": float(len(seconds)),
    }


def known(values: Iterable[float | None]) -> list[float]:
    """The values that are known (NaN, or None from a JSON file, is unknown)."""
    return [v for v in values if v is not None and not math.isnan(v)]


def median(values: Iterable[float | None]) -> float:
    """The median of the known values."""
    finite = known(values)
    return statistics.median(finite) if finite else math.nan


def medians(runs: Sequence[Mapping[str, float | None]]) -> Figures:
    """Figure by figure, the median over the runs that have it."""
    names: list[str] = []
    for run in runs:
        names.extend(n for n in run if n not in names)
    return {name: median(run[name] for run in runs if name in run) for name in names}


def over_runs(
    runs: Sequence[Mapping[str, float | None]],
    *,
    lowest: Iterable[str] = (),
    highest: Iterable[str] = (),
) -> Figures:
    """:func:`medians`, except for the figures named in ``lowest`` (``highest``): the least
    (greatest) value of any run, for a bound that must hold in every run ("never early")."""
    figures = medians(runs)
    for names, pick in ((lowest, min), (highest, max)):
        for name in names:
            values = known(run.get(name) for run in runs)
            if values:
                figures[name] = pick(values)
    return figures


def ratio(a: float | None, b: float | None) -> float:
    if a is None or b is None or math.isnan(a) or math.isnan(b) or b == 0:
        return math.nan
    return a / b


def per_job(total: float, jobs: int) -> float:
    return total / jobs if jobs else math.nan
