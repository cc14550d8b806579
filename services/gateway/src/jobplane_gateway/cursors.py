"""Opaque page cursors: what a listing hands out as ``next_cursor`` and takes back.

A cursor is base64url of a small JSON array. Clients must not build or read them (their
content may change); a cursor that does not decode is a ``422``.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import HTTPException, status
from jobplane.store import JobCursor


def _encode(parts: list[Any]) -> str:
    raw = json.dumps(parts, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise _invalid() from exc
    if not isinstance(parts, list):
        raise _invalid()
    return parts


def _invalid() -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        detail="invalid cursor: pass the next_cursor of the previous page as it is",
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def job_cursor(created_at: datetime, job_id: str) -> str:
    # Whole milliseconds, as the store keeps dates.
    return _encode([(created_at - _EPOCH) // timedelta(milliseconds=1), job_id])


def parse_job_cursor(cursor: str) -> JobCursor:
    parts = _decode(cursor)
    if len(parts) != 2 or not isinstance(parts[0], int) or not isinstance(parts[1], str):
        raise _invalid()
    try:
        created_at = _EPOCH + timedelta(milliseconds=parts[0])
    except OverflowError as exc:
        raise _invalid() from exc
    return JobCursor(created_at=created_at, job_id=parts[1])


def id_cursor(last_id: str) -> str:
    return _encode([last_id])


def parse_id_cursor(cursor: str) -> str:
    parts = _decode(cursor)
    if len(parts) != 1 or not isinstance(parts[0], str):
        raise _invalid()
    return parts[0]
