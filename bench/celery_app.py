"""The same work as Jobplane's, done by Celery + Redis: the comparison point of `make bench`.

Lives only under `bench/`; it is never shipped with the services.

One task per job: POST the job to the app's backend over HTTP, retry a failure after the same
delays as Jobplane's retry service (the N-th retry after `RETRY_DELAYS[N-1] * (1 + jitter)`,
never earlier), then send the user the same success e-mail (text + HTML, same headers) to the
same SMTP sink; after the last retry fails, the failure e-mail. HTTP and SMTP connections are
kept open per worker thread, as any Celery user would.

Configuration, as Celery's documentation recommends for short I/O-bound tasks that must not be
lost (the guarantee Jobplane gives):
- `task_acks_late` + `task_reject_on_worker_lost`: a task is acknowledged after it ran, so a
  worker that dies hands it back (at-least-once, like Jobplane's commit-after-effect);
- `worker_prefetch_multiplier = 4`: short tasks, so some prefetching (the docs advise 1 only for
  long tasks);
- JSON serialisation, results kept in Redis (Jobplane keeps every job's status too) for 1 day;
- the broker's `visibility_timeout` (1 h) above the longest retry delay used here;
- the worker runs `--without-gossip --without-mingle` (a single worker has no peers).
The pool (prefork with 2 processes, threads, gevent) is chosen on the command line.
"""

from __future__ import annotations

import json
import logging
import os
import random
import smtplib
import threading
import time
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import httpx
from celery import Celery, Task

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:9310")
BACKEND_URL = os.environ.get("BENCH_BACKEND_URL", "http://127.0.0.1:8301/jobs")
SMTP_HOST = os.environ.get("BENCH_SMTP_HOST", "127.0.0.1")
SMTP_PORT = int(os.environ.get("BENCH_SMTP_PORT", "1300"))
RETRY_DELAYS: list[float] = json.loads(os.environ.get("BENCH_RETRY_DELAYS", "[1, 2, 4, 8, 16]"))
JITTER = float(os.environ.get("BENCH_JITTER", "0.1"))
MAIL_FROM = "Jobplane <jobplane@localhost>"

app = Celery("bench", broker=f"{REDIS_URL}/0", backend=f"{REDIS_URL}/1")
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=4,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_expires=24 * 3600,
    broker_transport_options={"visibility_timeout": 3600},
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=True,
)

# One line per HTTP request at INFO would be the worker's main logging cost; Jobplane's
# services do not log them either.
logging.getLogger("httpx").setLevel(logging.WARNING)

_local = threading.local()


def _http() -> httpx.Client:
    client: httpx.Client | None = getattr(_local, "http", None)
    if client is None:
        client = httpx.Client(timeout=30)
        _local.http = client
    return client


def _send(message: EmailMessage) -> None:
    """Send on this thread's SMTP connection; reconnect once if it was dropped."""
    for _ in range(2):
        smtp: smtplib.SMTP | None = getattr(_local, "smtp", None)
        if smtp is None:
            smtp = smtplib.SMTP(SMTP_HOST, SMTP_PORT, local_hostname="localhost", timeout=30)
            _local.smtp = smtp
        try:
            smtp.send_message(message)
            return
        except (smtplib.SMTPServerDisconnected, OSError):
            _local.smtp = None
    raise smtplib.SMTPServerDisconnected("SMTP connection lost twice")


def mail(to: str, job_id: str, job_type: str, outcome: str, detail: str) -> EmailMessage:
    """The user's outcome e-mail, shaped like Jobplane's (text and HTML, same headers)."""
    finished = datetime.now(UTC)
    verb = "finished successfully" if outcome == "succeeded" else "failed"
    text = (
        f'Hello,\n\nyour job "{job_type}" has {verb}.\n\nJob ID: {job_id}\n'
        f"Finished at: {finished.isoformat()}\n\nResult:\n{detail}\n\n--\n"
        "Jobplane (this message was sent automatically)\n"
    )
    html = "<html><body><pre>" + text.replace("&", "&amp;").replace("<", "&lt;") + "</pre></body>"
    message = EmailMessage()
    message["From"] = MAIL_FROM
    message["To"] = to
    message["Subject"] = f"Your job {job_type} {outcome}"
    message["Date"] = format_datetime(finished)
    message["Message-ID"] = f"<{job_id}.{outcome}.{uuid.uuid4().hex[:8]}@localhost>"
    message["Auto-Submitted"] = "auto-generated"
    message["X-Jobplane-Job-Id"] = job_id
    message.set_content(text)
    message.add_alternative(html + "</html>", subtype="html")
    return message


@app.task(bind=True, max_retries=len(RETRY_DELAYS))
def run_job(
    self: Task,
    job_id: str,
    email: str,
    job_type: str,
    payload: dict[str, Any],
    due_at: float | None = None,
) -> dict[str, Any] | None:
    attempt = self.request.retries + 1
    error = ""
    retryable = True
    try:
        response = _http().post(
            BACKEND_URL,
            json={
                "job_id": job_id,
                "attempt": attempt,
                "job_type": job_type,
                "payload": payload,
                "due_at": due_at,
            },
        )
        if response.status_code == 200:
            result: dict[str, Any] = response.json()
            _send(mail(email, job_id, job_type, "succeeded", json.dumps(result.get("result"))))
            return result
        error = f"backend answered {response.status_code}"
        retryable = response.status_code >= 500
    except httpx.HTTPError as exc:
        error = f"backend unreachable: {exc!r}"
    if retryable and self.request.retries < len(RETRY_DELAYS):
        delay = RETRY_DELAYS[self.request.retries] * (1 + JITTER * random.random())
        due = time.time() + delay
        raise self.retry(
            eta=datetime.fromtimestamp(due, UTC),
            kwargs={
                "job_id": job_id,
                "email": email,
                "job_type": job_type,
                "payload": payload,
                "due_at": due,
            },
        )
    _send(mail(email, job_id, job_type, "failed", error))
    return None
