"""The rules every front door applies to a job request: one place, shared by the gateway
(HTTP) and the dispatcher (``job.requested`` produced straight to Kafka). Pure.

The patterns are strings so that pydantic models can use them as they are (``Field(pattern=…)``,
where ``$`` means the end of the text). Here they are applied with ``re.fullmatch``, so a
trailing newline never passes either. Ids and job types end up in logs, mail headers and
URLs: only visible ASCII without separators or line breaks.

Each ``check_*`` returns what is wrong (a sentence for the client or the dead letter) or
``None`` when the value is acceptable.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Any

# An app id is chosen by the administrator: lower case, a DNS label's shape.
APP_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
# A user id as the app knows it: letters, digits and ``. _ ~ : @ + -``; no slash (it is a
# path segment), no space, no control character.
USER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._~:@+-]{0,127}$"
# Job ids are made by the gateway (hex) or by an app producing to Kafka itself.
JOB_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,200}$"
JOB_TYPE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}$"
# An attempt's timeout: at least a second, at most a day (the deadline arithmetic and the
# Avro int stay far from their limits).
MIN_TIMEOUT_SECONDS = 1
MAX_TIMEOUT_SECONDS = 86_400
# How far ahead a request's ``not_before`` may be. The retry service sets it a second or so
# ahead; a dispatcher holds such an event in memory until then, and a partition with too many
# held is paused, so a request cannot park itself there for long.
MAX_NOT_BEFORE_AHEAD_SECONDS = 60

_APP_ID = re.compile(APP_ID_PATTERN)
_USER_ID = re.compile(USER_ID_PATTERN)
_JOB_ID = re.compile(JOB_ID_PATTERN)
_JOB_TYPE = re.compile(JOB_TYPE_PATTERN)


def check_app_id(value: str) -> str | None:
    if _APP_ID.fullmatch(value):
        return None
    return (
        f"app id {value[:80]!r} is not valid: 1 to 63 characters of a-z 0-9 -, "
        "starting with a letter or digit"
    )


def check_user_id(value: str) -> str | None:
    if _USER_ID.fullmatch(value):
        return None
    return (
        f"user id {value[:140]!r} is not valid: 1 to 128 characters of A-Z a-z 0-9 . _ ~ : @ + -, "
        "starting with a letter or digit"
    )


def check_job_id(value: str) -> str | None:
    if _JOB_ID.fullmatch(value):
        return None
    return f"job id {value[:210]!r} is not valid: 1 to 200 characters of A-Z a-z 0-9 _ . : -"


def check_job_type(value: str) -> str | None:
    if _JOB_TYPE.fullmatch(value):
        return None
    return (
        f"job type {value[:120]!r} is not valid: 1 to 100 characters of A-Z a-z 0-9 . _ : / -, "
        "starting with a letter or digit"
    )


def check_not_before(value: datetime | None, now: datetime) -> str | None:
    """When the backend may be called at the earliest; ``None`` (at once) is fine."""
    if value is None:
        return None
    ahead = (value - now).total_seconds()
    if ahead > MAX_NOT_BEFORE_AHEAD_SECONDS:
        return (
            f"not_before is {ahead:.0f} s ahead: at most {MAX_NOT_BEFORE_AHEAD_SECONDS} s "
            "(it is for the retry service's early requests, not for scheduling jobs)"
        )
    return None


def check_timeout_seconds(value: float | None) -> str | None:
    """A timeout in seconds; ``None`` (not given: the app's default applies) is fine."""
    if value is None:
        return None
    if isinstance(value, bool) or not math.isfinite(value) or value != int(value):
        return f"timeout {value!r} is not a whole number of seconds"
    if not MIN_TIMEOUT_SECONDS <= value <= MAX_TIMEOUT_SECONDS:
        return (
            f"timeout {int(value)} s is out of range "
            f"({MIN_TIMEOUT_SECONDS} to {MAX_TIMEOUT_SECONDS} s)"
        )
    return None


def check_json_text(value: str, what: str = "payload") -> str | None:
    """A JSON document in text form (the payload travels as JSON text)."""
    return parse_json_text(value, what)[1]


def parse_json_text(value: str, what: str = "payload") -> tuple[Any, str | None]:
    """The JSON document and ``None``, or ``None`` and what is wrong with it. ``NaN`` and
    ``Infinity``, which the json module reads but JSON has not, are refused, and so is a lone
    surrogate escape (``"\\ud800"``: no character, no UTF-8 form), as ``json_text`` refuses
    them at the gateway."""
    try:
        document = json.loads(value, parse_constant=_no_json_constant)
        if "\\u" in value:  # only an escape can make a lone surrogate (the text is Unicode)
            json_text(document)
    except ValueError as exc:
        return None, f"{what} is not valid JSON: {exc}"
    return document, None


def _no_json_constant(name: str) -> Any:
    raise ValueError(f"{name} is no JSON value")


def json_text(value: Any) -> str:
    """The JSON text a payload or result travels as; refuses NaN and Infinity (no JSON)."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        text.encode()  # a lone surrogate ("\ud800") has no UTF-8 form
    except ValueError as exc:  # UnicodeEncodeError is one
        raise ValueError(f"not valid JSON text: {exc}") from exc
    return text


def clamp_timeout_seconds(value: float) -> int:
    """A stored timeout brought into range: an app registered before the bounds existed
    may hold any number, and a deadline must never overflow the date arithmetic."""
    if not math.isfinite(value):
        return MAX_TIMEOUT_SECONDS
    return int(min(max(value, MIN_TIMEOUT_SECONDS), MAX_TIMEOUT_SECONDS))
