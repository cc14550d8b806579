"""The e-mails' words: Jinja2 templates rendered to (subject, text, html). Pure.

Templates live in ``templates/<kind>/<language>.{subject.txt,txt,html}``; HTML is autoescaped,
so text from apps and backends (job types, results, error messages) cannot inject markup.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from jobplane.events import FailureKind, JobCompleted, JobDead

TEMPLATE_DIR = Path(__file__).parent / "templates"
LANGUAGES = ("en", "ja")
DEFAULT_LANGUAGE = "en"
# Results can be large; the mail shows the beginning, the status API has all of it.
MAX_RESULT_CHARS = 2000
RAW_PREVIEW_BYTES = 32


class MailKind(StrEnum):
    USER_SUCCESS = "user_success"
    USER_FAILURE = "user_failure"
    ADMIN_ALERT = "admin_alert"


# Administrators read English; users read their registered language.
_KIND_LANGUAGES: dict[MailKind, tuple[str, ...]] = {
    MailKind.USER_SUCCESS: LANGUAGES,
    MailKind.USER_FAILURE: LANGUAGES,
    MailKind.ADMIN_ALERT: ("en",),
}

_env = Environment(
    loader=FileSystemLoader(TEMPLATE_DIR),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    # The templates ship with the service and change only with a new release (a restart):
    # without this, every mail stats each of its three template files to see if it changed.
    auto_reload=False,
)


def language_of(preference: str | None, kind: MailKind = MailKind.USER_SUCCESS) -> str:
    """The template language for a user's ``language`` ("ja", "ja-JP", …), else English."""
    if preference:
        base = preference.replace("_", "-").split("-", 1)[0].strip().lower()
        if base in _KIND_LANGUAGES[kind]:
            return base
    return DEFAULT_LANGUAGE


def render(
    kind: MailKind | str, language: str | None, context: Mapping[str, Any]
) -> tuple[str, str, str]:
    """(subject, plain text, HTML) of mail ``kind`` in ``language`` (fallback English)."""
    kind = MailKind(kind)
    lang = language_of(language, kind)
    base = f"{kind.value}/{lang}"
    values = {**context, "lang": lang}
    subject = " ".join(_env.get_template(f"{base}.subject.txt").render(values).split())
    text = _env.get_template(f"{base}.txt").render(values)
    html = _env.get_template(f"{base}.html").render({**values, "subject": subject})
    return subject, text, html


# -- contexts built from events ----------------------------------------------------------


def format_time(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def status_link(status_page_url: str | None, job_id: str) -> str | None:
    if not status_page_url or not job_id:
        return None
    if "{job_id}" in status_page_url:
        return status_page_url.replace("{job_id}", job_id)
    return f"{status_page_url.rstrip('/')}/{job_id}"


def result_preview(result: str) -> str:
    """The job's JSON result, indented when it is an object or list, and cut to a sane size."""
    text = result
    try:
        value = json.loads(result)
    except ValueError:
        pass
    else:
        if value is None or value == "" or value == {} or value == []:
            return ""
        if isinstance(value, (dict, list)):
            text = json.dumps(value, indent=2, ensure_ascii=False)
        elif isinstance(value, str):
            text = value
    if len(text) > MAX_RESULT_CHARS:
        text = text[:MAX_RESULT_CHARS] + " …"
    return text


def is_dead_letter(event: JobDead) -> bool:
    """An event some service could not handle (it names where it came from), not a job the
    retry service gave up: it tells nothing about the job's outcome."""
    return event.source_topic is not None


def is_undecodable(event: JobDead) -> bool:
    """A dead letter for bytes nobody could read: no trusted app, user or job."""
    return event.app_id == "" and (
        event.failure is not None and event.failure.kind is FailureKind.UNDECODABLE
    )


def success_context(event: JobCompleted, status_page_url: str | None = None) -> dict[str, Any]:
    return {
        "job_id": event.job_id,
        "app_id": event.app_id,
        "user_id": event.user_id,
        "job_type": event.job_type,
        "occurred_at": format_time(event.occurred_at),
        "result": result_preview(event.result),
        "status_url": status_link(status_page_url, event.job_id),
    }


def failure_context(event: JobDead, status_page_url: str | None = None) -> dict[str, Any]:
    return {
        "job_id": event.job_id,
        "app_id": event.app_id,
        "user_id": event.user_id,
        "job_type": event.job_type,
        "occurred_at": format_time(event.occurred_at),
        "reason": event.reason,
        "attempts": max(event.attempt, len(event.attempts)),
        "status_url": status_link(status_page_url, event.job_id),
    }


def alert_context(
    event: JobDead,
    *,
    status_page_url: str | None = None,
    user_notified: bool = True,
    user_problem: str = "",
) -> dict[str, Any]:
    failure = event.failure
    raw = event.raw_event or b""
    return {
        "undecodable": is_undecodable(event),
        "job_id": event.job_id,
        "app_id": event.app_id,
        "user_id": event.user_id,
        "job_type": event.job_type,
        "trace_id": event.trace_id,
        "occurred_at": format_time(event.occurred_at),
        "reason": event.reason,
        "failure": (
            {
                "kind": failure.kind.value,
                "message": failure.message,
                "http_status": failure.http_status,
            }
            if failure
            else None
        ),
        "attempt_rows": [
            {
                "attempt": a.attempt,
                "dispatched_at": format_time(a.dispatched_at),
                "ended_at": format_time(a.ended_at),
                "kind": a.failure.kind.value if a.failure else None,
                "message": a.failure.message if a.failure else None,
                "http_status": a.failure.http_status if a.failure else None,
            }
            for a in sorted(event.attempts, key=lambda a: a.attempt)
        ],
        "source_topic": event.source_topic,
        "raw_size": len(raw),
        "raw_preview": raw[:RAW_PREVIEW_BYTES].hex(" ") if raw else "",
        "user_notified": user_notified,
        "user_problem": user_problem,
        "status_url": None if is_undecodable(event) else status_link(status_page_url, event.job_id),
    }
