from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, status
from jobplane.logs import fields

from jobplane_gateway.api.deps import ConnsDep
from jobplane_gateway.api.responses import errors
from jobplane_gateway.schemas import Health

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


@router.get("/readyz", responses=errors(503))
async def readyz(conns: ConnsDep) -> Health:
    """Readiness: the job store answers."""
    try:
        await conns.store.db.command("ping")
    except Exception as exc:
        log.warning("job store not ready", extra=fields(error=repr(exc)))
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail="job store unreachable"
        ) from exc
    return Health(status="ready")
