"""A run's figures from what was recorded: submits, e-mail times, backend calls, CPU and memory.

Pure functions, so that they are tested without any server (`tests/bench/`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from bench.stats import Figures, latency_figures, lateness_figures, per_job

Submit = tuple[str, float, float, int]  # job id, started, answered (epoch s), status (202: ok)


def outcome_figures(submits: Sequence[Submit], received: Mapping[str, float]) -> Figures:
    """Throughput from the first submit to the last e-mail, latencies, what went missing."""
    accepted = [s for s in submits if s[3] == 202]
    delivered = [s for s in accepted if s[0] in received]
    first = min((s[1] for s in submits), default=math.nan)
    last = max((received[s[0]] for s in delivered), default=math.nan)
    last_answer = max((s[2] for s in submits), default=math.nan)
    return {
        "jobs/s end to end": len(delivered) / (last - first) if delivered else 0.0,
        "submits/s": len(accepted) / (last_answer - first) if accepted else 0.0,
        **latency_figures("submit→e-mail", [received[s[0]] - s[1] for s in delivered]),
        **latency_figures("accept", [s[2] - s[1] for s in accepted], (50, 99)),
        "jobs": float(len(submits)),
        "rejected submits": float(len(submits) - len(accepted)),
        "e-mails missing": float(len(accepted) - len(delivered)),
    }


def cost_figures(
    cpu_seconds: Mapping[str, float],
    peak_rss: Mapping[str, int],
    client_cpu_seconds: float,
    client_peak_rss: int,
    jobs: int,
    platform: Sequence[str],
) -> Figures:
    """CPU ms per job per process, the platform's total (its services, broker and store),
    everything but the shared backend, and all processes (the issue's measure: the client and
    the backend do different work for each system, Celery's client the submit's); peak RSS per
    process in MiB."""
    cpu = {**cpu_seconds, "client": client_cpu_seconds}
    figures: Figures = {f"CPU ms/job {name}": per_job(s * 1000, jobs) for name, s in cpu.items()}
    figures["CPU ms/job platform"] = per_job(sum(cpu[n] for n in platform) * 1000, jobs)
    everything = sum(s for name, s in cpu.items() if name != "backend")
    figures["CPU ms/job all but backend"] = per_job(everything * 1000, jobs)
    figures["CPU ms/job all processes"] = per_job(sum(cpu.values()) * 1000, jobs)
    for name, rss in {**peak_rss, "client": client_peak_rss}.items():
        figures[f"peak RSS MB {name}"] = rss / 2**20
    return figures


def machine_share(figures: Figures, cores: int) -> float:
    """Percent of the machine's cores that the run kept busy: the CPU per job of every
    measured process (the backend too) at the rate the jobs were submitted."""
    return 100 * figures["CPU ms/job all processes"] * figures["submits/s"] / (1000 * cores)


def retry_figures(
    calls: Sequence[Mapping[str, Any]], due: Mapping[tuple[str, int], float] | None
) -> Figures:
    """Actual minus due time of every retry, actual being when the backend got the attempt.

    `due` maps (job id, attempt) to its due time; None: each call carries its own `due_at`.
    """
    first_call: dict[tuple[str, int], Mapping[str, Any]] = {}
    for call in calls:
        first_call.setdefault((call["job_id"], call["attempt"]), call)
    lateness = []
    for key, call in first_call.items():
        if key[1] < 2:
            continue
        due_at = call.get("due_at") if due is None else due.get(key)
        if due_at is not None:
            lateness.append(call["at"] - due_at)
    figures = lateness_figures("retry lateness", lateness)
    figures["backend calls/job"] = per_job(len(calls), len({c["job_id"] for c in calls}))
    return figures


def released_late_ms(log_text: str) -> list[float]:
    """How late the retry service itself re-requested each retry (its "retry requested" log
    lines' `late_ms`), to tell its share of the lateness from the dispatch that follows."""
    late = []
    for line in log_text.splitlines():
        if '"retry requested"' not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("msg") == "retry requested" and "late_ms" in record:
            late.append(float(record["late_ms"]))
    return late
