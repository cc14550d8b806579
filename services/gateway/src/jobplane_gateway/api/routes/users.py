"""The user-DB: an app registers each user's e-mail address before submitting jobs for them."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Response, status
from jobplane.logs import fields
from jobplane.store import User
from jobplane.validation import USER_ID_PATTERN

from jobplane_gateway.api.deps import JSON_BODY, AppDep, StoreDep
from jobplane_gateway.api.responses import AUTH_ERRORS, BODY_ERRORS, errors
from jobplane_gateway.schemas import UserIn, UserOut

log = logging.getLogger(__name__)

UserIdPath = Annotated[str, Path(pattern=USER_ID_PATTERN)]

router = APIRouter(prefix="/v1/users", tags=["users"])


@router.put(
    "/{user_id}",
    status_code=status.HTTP_200_OK,
    responses={
        201: {"model": UserOut, "description": "The user is new"},
        **errors(*AUTH_ERRORS, *BODY_ERRORS),
    },
    dependencies=[JSON_BODY],
)
async def upsert_user(
    user_id: UserIdPath,
    body: UserIn,
    app: AppDep,
    store: StoreDep,
    response: Response,
) -> UserOut:
    """Register (201) or update (200) a user of the calling app."""
    created = await store.upsert_user(
        User(app_id=app.app_id, user_id=user_id, email=body.email, language=body.language)
    )
    if created:
        response.status_code = status.HTTP_201_CREATED
    log.info("user saved", extra=fields(app_id=app.app_id, user_id=user_id, created=created))
    return UserOut(user_id=user_id, email=body.email, language=body.language)


@router.get("/{user_id}", responses=errors(*AUTH_ERRORS, 404, 422))
async def get_user(user_id: UserIdPath, app: AppDep, store: StoreDep) -> UserOut:
    """A user of the calling app, as registered."""
    user = await store.get_user(app.app_id, user_id)
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no user '{user_id}'")
    return UserOut(user_id=user.user_id, email=user.email, language=user.language)
