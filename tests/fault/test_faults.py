"""One fault at a time against the four services running as separate processes.

Each scenario deploys the services afresh (own topics, own database), registers an app and
its users, submits JOBS jobs (see `workload.job_mix`) at SUBMIT_RATE per second, injects its
fault FAULT_AT seconds into the submission, waits (bounded) until every acknowledged job is
finished and every owed e-mail received, and checks: zero lost, stuck, duplicate, missing
e-mails and early retries. Select scenarios with `-k`, e.g. `pytest tests/fault -k kafka`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from jobplane_local.mailbox import ReceivedMail
from pymongo import AsyncMongoClient

from tests.fault.backend import read_receipts
from tests.fault.checks import (
    FINISHED,
    MailKey,
    MailReader,
    Outcome,
    check,
    expected_mails,
    mail_keys,
)
from tests.fault.processes import RETRY_DELAYS, BackendProcess, Deployment, Infra, log
from tests.fault.workload import (
    USERS,
    app_admin_email,
    job_mix,
    register,
    submit_all,
    user_email,
)

JOBS = 300
SUBMIT_RATE = 25.0  # jobs per second: the run lasts ~12 s, the fault lands in the middle
FAULT_AT = 5.0
# After the fault and the last submission: how long jobs may take to finish and mails to
# arrive (always-failing jobs need ~10 s of retries; an attempt lost to a crash waits for
# its 10 s deadline), and how long without any progress means the rest is stuck: longer
# than a consumer group takes to drop a member a restarted broker forgot (its session
# timeout, 45 s), after which the member's partitions are consumed again.
SETTLE_BOUND = 120.0
STALL_BOUND = 60.0
# Duplicates may come a little after the last owed mail: look again after this.
LATE_DUPLICATES_WINDOW = 3.0


@dataclass(frozen=True)
class Fault:
    name: str
    target: str  # a service, an infrastructure server, or the backend
    # kill: kill -9 a service, then restart it; crash: kill -9 a server (Kafka, the store),
    # then start it; stop: stop a server, then start it; flap: kill the backend repeatedly
    action: str
    down_seconds: float
    # Recovery is the first e-mail after the fault (notifier, SMTP), else the first job finished.
    recover_by_mail: bool = False


FAULTS = [
    Fault("kill-gateway", "gateway", "kill", 2.0),
    Fault("kill-dispatcher", "dispatcher", "kill", 2.0),
    Fault("kill-retry", "retry", "kill", 2.0),
    Fault("kill-notifier", "notifier", "kill", 2.0, recover_by_mail=True),
    Fault("kafka-down", "kafka", "stop", 30.0),
    # What a server acknowledged before a kill -9 must still be there after it (the store
    # runs with --sync-on-commit for this; Kafka's log is in the page cache).
    Fault("kafka-crash", "kafka", "crash", 5.0),
    Fault("store-down", "store", "stop", 25.0),
    Fault("store-crash", "store", "crash", 5.0),
    Fault("smtp-down", "smtp", "stop", 65.0, recover_by_mail=True),
    Fault("backend-flapping", "backend", "flap", 3.0),
]
BACKEND_FLAPS = 3


def inject(fault: Fault, deployment: Deployment, infra: Infra, backend: BackendProcess) -> None:
    """Apply the fault and undo it; returns once everything it touched is back and ready."""
    log(f"{fault.name}: fault begins")
    if fault.action == "kill":
        deployment.kill(fault.target)
        time.sleep(fault.down_seconds)
        deployment.start(fault.target)
    elif fault.action in ("stop", "crash"):
        (infra.stop if fault.action == "stop" else infra.kill)(fault.target)
        time.sleep(fault.down_seconds)
        infra.start(fault.target)
    else:
        for flap in range(BACKEND_FLAPS):
            backend.kill(log)
            time.sleep(fault.down_seconds)
            backend.start(log)
            if flap < BACKEND_FLAPS - 1:
                time.sleep(fault.down_seconds)
    log(f"{fault.name}: fault over")


@pytest.mark.timeout(480)
@pytest.mark.parametrize("fault", FAULTS, ids=lambda fault: fault.name)
async def test_fault(
    fault: Fault,
    fault_infra: Infra,
    backend: BackendProcess,
    deploy: Callable[[str], Deployment],
    fault_report: list[Outcome],
) -> None:
    began = time.monotonic()
    deployment = deploy(fault.name)
    await asyncio.to_thread(deployment.start)
    recipients = {user_email(deployment, f"user-{n}"): f"user-{n}" for n in range(USERS)}
    admins = [app_admin_email(deployment), deployment.platform_admin]
    user_emails = {user: email for email, user in recipients.items()}
    async with httpx.AsyncClient(base_url=deployment.gateway_url, timeout=15) as http:
        api_key = await register(http, deployment)
        submitting = asyncio.create_task(
            submit_all(http, api_key, deployment.name, job_mix(JOBS), SUBMIT_RATE)
        )
        await asyncio.sleep(FAULT_AT)
        fault_start = datetime.now(UTC)
        await asyncio.to_thread(inject, fault, deployment, fault_infra, backend)
        fault_end = datetime.now(UTC)
        submitted = await submitting
    log(
        f"{fault.name}: {len(submitted.acknowledged)} acknowledged, {submitted.resent}"
        f" re-sent, {submitted.given_up} given up; answers {dict(submitted.answers)}"
    )
    mailbox = MailReader(fault_infra.mail_dir)
    ours = set(recipients) | {a.lower() for a in admins}

    def our_mails() -> list[ReceivedMail]:
        return [m for m in mailbox.mails() if ours & {r.lower() for r in m.rcpt_tos}]

    docs = await settle(
        fault_infra.mongodb_uri,
        deployment.database,
        list(submitted.acknowledged),
        our_mails,
        lambda doc: expected_mails(doc, user_emails, admins),
    )
    await asyncio.sleep(LATE_DUPLICATES_WINDOW)
    await asyncio.to_thread(deployment.stop)
    outcome = check(
        fault.name,
        submitted.acknowledged,
        docs,
        [r for r in read_receipts(backend.receipts) if r.job_id in submitted.acknowledged],
        our_mails(),
        user_emails=user_emails,
        admin_emails=admins,
        retry_delays=RETRY_DELAYS,
        fault_end=fault_end,
        recover_by_mail=fault.recover_by_mail,
        notifier_killed_at=fault_start if fault.name == "kill-notifier" else None,
    )
    outcome.not_acknowledged = JOBS - len(submitted.acknowledged)
    outcome.seconds = time.monotonic() - began
    fault_report.append(outcome)
    log(f"{fault.name}: {outcome.row()}")
    assert outcome.ok, f"{fault.name}:\n{outcome.details()}"


async def settle(
    mongodb_uri: str,
    database: str,
    job_ids: list[str],
    mails: Callable[[], list[ReceivedMail]],
    owed_mails: Callable[[dict[str, Any]], set[MailKey]],
) -> dict[str, dict[str, Any]]:
    """Wait until every job is finished and every owed mail received, or SETTLE_BOUND passed,
    or nothing progressed for STALL_BOUND; return the jobs as the store has them then."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongodb_uri, serverSelectionTimeoutMS=5000
    )
    try:
        jobs = client[database]["jobs"]
        began = last_progress = time.monotonic()
        last_state: tuple[int, int] | None = None
        docs: dict[str, dict[str, Any]] = {}
        while True:
            docs = {doc["_id"]: doc async for doc in jobs.find({"_id": {"$in": job_ids}})}
            received = {key for mail in mails() for key in mail_keys(mail)}
            finished = sum(1 for doc in docs.values() if doc.get("status") in FINISHED)
            owed: set[MailKey] = set().union(*(owed_mails(doc) for doc in docs.values()))
            if finished == len(job_ids) and owed <= received:
                return docs
            state = (finished, len(received))
            now = time.monotonic()
            if state != last_state:
                last_state, last_progress = state, now
            if now - began > SETTLE_BOUND or now - last_progress > STALL_BOUND:
                log(f"settle: gave up with {finished}/{len(job_ids)} finished")
                return docs
            await asyncio.sleep(2.0)
    finally:
        await client.close()
