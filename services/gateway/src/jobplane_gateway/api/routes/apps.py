"""App registration (admin only)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, status
from jobplane.logs import fields
from jobplane.store import AlreadyExistsError

from jobplane_gateway.api.deps import JSON_BODY, AdminDep, StoreDep
from jobplane_gateway.api.responses import ADMIN_ERRORS, BODY_ERRORS, errors
from jobplane_gateway.schemas import AppCreate, AppCreated
from jobplane_gateway.security import hash_secret, new_api_key, new_webhook_secret

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/apps", tags=["apps"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=errors(*ADMIN_ERRORS, 409, *BODY_ERRORS),
    dependencies=[JSON_BODY],
)
async def register_app(body: AppCreate, store: StoreDep, _admin: AdminDep) -> AppCreated:
    """Register an app; its API key is in this answer only (the store keeps a hash), and so
    is its webhook secret when it registers a ``webhook_url``."""
    api_key = new_api_key(body.app_id)
    webhook_secret = new_webhook_secret() if body.webhook_url is not None else None
    try:
        await store.create_app(
            app_id=body.app_id,
            backend_url=str(body.backend_url),
            default_timeout_seconds=body.default_timeout_seconds,
            admin_emails=list(body.admin_emails),
            api_key_hash=hash_secret(api_key),
            max_concurrency=body.max_concurrency,
            webhook_url=str(body.webhook_url) if body.webhook_url is not None else None,
            webhook_secret=webhook_secret,
        )
    except AlreadyExistsError as exc:
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail=f"app '{body.app_id}' is registered already"
        ) from exc
    log.info("app registered", extra=fields(app_id=body.app_id))
    return AppCreated(app_id=body.app_id, api_key=api_key, webhook_secret=webhook_secret)
