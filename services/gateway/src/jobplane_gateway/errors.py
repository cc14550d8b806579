"""What the gateway answers when a dependency is down: ``503`` with ``Retry-After``.

A store that cannot be reached (no server selected in time, a dropped connection, a
primary stepping down) or Kafka refusing work is a passing condition, not a bug: the client
is told to come back, never handed a 500. Other store errors stay 500s (they are bugs).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from jobplane.kafka import KafkaError, error_cause
from jobplane.logs import fields
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError, WTimeoutError

log = logging.getLogger(__name__)

# Server answers that mean "not now" (MongoDB error codes): a node shutting down or no
# longer primary, an interrupted operation.
_TRANSIENT_CODES = frozenset({91, 189, 10107, 11600, 11602, 13435, 13436})


def is_unavailable(exc: BaseException) -> bool:
    """Whether a store error means "the store cannot serve right now"."""
    if isinstance(exc, (ConnectionFailure, WTimeoutError)):
        return True
    if isinstance(exc, OperationFailure):
        return exc.code in _TRANSIENT_CODES or exc.has_error_label("RetryableWriteError")
    return False


def describe_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """What is wrong, where, without echoing the input back (it may be huge, or hold values
    JSON cannot even carry, such as NaN)."""
    return [
        {"type": error["type"], "loc": list(error["loc"]), "msg": error["msg"]}
        for error in exc.errors()
    ]


def unavailable(detail: str, retry_after_seconds: int) -> JSONResponse:
    return JSONResponse(
        {"detail": detail}, status_code=503, headers={"Retry-After": str(retry_after_seconds)}
    )


def install(app: FastAPI, retry_after_seconds: int) -> None:
    async def store_error(request: Request, exc: Exception) -> JSONResponse:
        if not is_unavailable(exc):
            raise exc  # a bug: the 500 path logs it with its traceback
        log.warning(
            "job store unavailable",
            extra=fields(cause="gateway.store", error=error_cause(exc), detail=str(exc)[:300]),
        )
        return unavailable(
            "the job store is unavailable: retry the same request later", retry_after_seconds
        )

    async def kafka_error(request: Request, exc: Exception) -> JSONResponse:
        log.warning(
            "Kafka unavailable", extra=fields(cause="gateway.kafka", error=error_cause(exc))
        )
        return unavailable(
            "the event bus is unavailable: retry the same request later", retry_after_seconds
        )

    async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return JSONResponse({"detail": describe_errors(exc)}, status_code=422)

    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(PyMongoError, store_error)
    app.add_exception_handler(KafkaError, kafka_error)
