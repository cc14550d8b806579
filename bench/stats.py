"""Small statistics helpers: percentiles and medians of run figures."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation; NaN if there are no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_figures(name: str, seconds: Sequence[float]) -> dict[str, float]:
    """``{name} p50/p95/p99`` in milliseconds."""
    return {f"{name} p{q} ms": percentile(seconds, q) * 1000 for q in (50, 95, 99)}


def median(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan
