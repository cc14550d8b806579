"""Dead-letter redrive from the command line: the API's redrive, sent in batches.

The gateway paces a redrive itself (``rate_per_second``); the CLI sends one second's worth of
jobs per request, so that a long redrive shows its progress, a Ctrl-C stops it between
batches, and no request runs for minutes. Each batch carries an ``Idempotency-Key`` of this
run: a batch sent again (a timeout, a retry) is answered with its first result, never
redriven twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jobplane_cli.client import Gateway

MAX_BATCH = 1000  # the API's largest `limit`


@dataclass(frozen=True)
class Selection:
    """Which dead jobs: by ids, or by a filter (app, failure kind, time range)."""

    job_ids: list[str] | None = None
    app_id: str | None = None
    failure_kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def request(self, **extra: Any) -> dict[str, Any]:
        """The API's `RedriveRequest` for this selection."""
        return {
            "job_ids": self.job_ids,
            "app_id": self.app_id,
            "failure_kind": self.failure_kind,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            **extra,
        }


@dataclass
class Outcome:
    dry_run: bool
    matched: int = 0
    redriven: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


def batch_size(rate_per_second: float) -> int:
    """One second's worth of jobs at the rate, at least one, at most the API's limit."""
    return max(1, min(MAX_BATCH, int(rate_per_second)))


def batches(job_ids: list[str], size: int) -> list[list[str]]:
    return [job_ids[i : i + size] for i in range(0, len(job_ids), size)]


def redrive_path(gateway: Gateway) -> str:
    return "/v1/admin/dead/redrive" if gateway.as_admin else "/v1/dead/redrive"


def dry_run(gateway: Gateway, selection: Selection, limit: int) -> Outcome:
    """What a redrive of ``selection`` would do, changing nothing."""
    body = selection.request(dry_run=True, limit=limit)
    if not gateway.as_admin:
        body.pop("app_id")  # an app redrives its own jobs only
    answer = gateway.request("POST", redrive_path(gateway), admin=gateway.as_admin, body=body)
    return Outcome(True, answer["matched"], list(answer["redriven"]), list(answer["skipped"]))


def redrive(
    gateway: Gateway,
    job_ids: list[str],
    rate_per_second: float,
    on_batch: Callable[[int], None] = lambda _: None,
) -> Outcome:
    """Redrive ``job_ids`` in batches at ``rate_per_second``; ``on_batch(n)`` after each."""
    outcome = Outcome(False, matched=len(job_ids))
    run = uuid.uuid4().hex[:12]
    for number, batch in enumerate(batches(job_ids, batch_size(rate_per_second))):
        answer = gateway.request(
            "POST",
            redrive_path(gateway),
            admin=gateway.as_admin,
            body=Selection(job_ids=batch).request(
                dry_run=False, limit=len(batch), rate_per_second=rate_per_second
            ),
            headers={"Idempotency-Key": f"jobplane-cli-{run}-{number}"},
        )
        outcome.redriven += answer["redriven"]
        outcome.skipped += answer["skipped"]
        on_batch(len(batch))
    return outcome
