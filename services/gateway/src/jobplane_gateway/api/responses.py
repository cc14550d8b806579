"""The error answers of the API, described once for the OpenAPI document: each status with
its JSON body model, what it means and an example."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from jobplane_gateway.api.deps import NOT_JSON


class ErrorBody(BaseModel):
    """Every error but a request that does not validate."""

    detail: str


class FieldError(BaseModel):
    type: str
    loc: list[str | int]
    msg: str


class ValidationErrorBody(BaseModel):
    """A request that does not validate (``422``): what is wrong, and where; or a rule of
    the route that refuses it (a sentence)."""

    detail: list[FieldError] | str


_ERRORS: dict[int, tuple[str, Any]] = {
    400: (
        "The body cannot be read at all (bytes that are not UTF-8 text); JSON that does not "
        "parse is a 422",
        "There was an error parsing the body",
    ),
    401: (
        "No key, or not a valid one (the answer carries `WWW-Authenticate: Bearer`)",
        "invalid API key",
    ),
    403: ("The key is valid but may not do this", "this route needs the admin API key"),
    404: ("No such resource (or not the calling app's)", "no job '4f1c0d9e'"),
    409: (
        "Conflicts with what is stored; nothing was changed",
        "Idempotency-Key 'k-1' was used for another request (job 4f1c0d9e); use a new key",
    ),
    413: (
        "The body (or its payload / result) is over the size limit named in the message",
        "the payload is 600000 bytes of JSON; the limit is 524288 bytes (MAX_PAYLOAD_BYTES)",
    ),
    415: (
        "The body is not JSON: send `Content-Type: application/json`",
        NOT_JSON,
    ),
    503: (
        "The job store or Kafka is unavailable; nothing was stored: retry after `Retry-After`",
        "the job store is unavailable: retry the same request later",
    ),
}
_VALIDATION_EXAMPLE = {
    "detail": [
        {
            "type": "less_than_equal",
            "loc": ["body", "timeout_seconds"],
            "msg": "Input should be less than or equal to 86400",
        }
    ]
}

# Every route that needs a key (an app's or the admin's) may answer these.
AUTH_ERRORS = (401, 503)
ADMIN_ERRORS = (401, 403, 503)
# Every route that reads a JSON body.
BODY_ERRORS = (400, 415, 422)


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route for these error statuses."""
    described: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        if code == 422:
            described[code] = {
                "model": ValidationErrorBody,
                "description": "The request does not validate (or a rule of the route refuses it)",
                "content": {"application/json": {"example": _VALIDATION_EXAMPLE}},
            }
            continue
        description, example = _ERRORS[code]
        response: dict[str, Any] = {
            "model": ErrorBody,
            "description": description,
            "content": {"application/json": {"example": {"detail": example}}},
        }
        if code == 503:
            response["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before retrying",
                    "schema": {"type": "integer"},
                }
            }
        described[code] = response
    return described


def cancel_errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The errors of a cancel route: ``codes`` and the ``409`` of a finished job."""
    from jobplane_gateway.schemas import CancelConflict  # schemas import this module's deps

    return {
        **errors(*codes),
        409: {
            "model": CancelConflict,
            "description": "The job has finished already (succeeded, dead or cancelled): "
            "nothing was changed; `status` says how it ended",
            "content": {
                "application/json": {
                    "example": {
                        "detail": "job '4f1c0d9e' is succeeded already: only an unfinished "
                        "job can be cancelled",
                        "status": "succeeded",
                    }
                }
            },
        },
    }
