"""Dead-letter redrive: an app redrives its own dead jobs, the administrators any app's."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, status

from jobplane_gateway import operations
from jobplane_gateway.api.deps import JSON_BODY, AdminDep, AppDep, BusDep, SettingsDep, StoreDep
from jobplane_gateway.api.responses import ADMIN_ERRORS, AUTH_ERRORS, BODY_ERRORS, errors
from jobplane_gateway.schemas import IDEMPOTENCY_KEY_PATTERN, RedriveRequest, RedriveResult

router = APIRouter(tags=["dead letters"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description=(
            "Printable ASCII, 1-200 characters. A repeat with the same key (by the same "
            "caller) answers the first request's result and changes nothing."
        ),
    ),
]

_HOW = """

Either `job_ids` (those jobs) or a filter (`failure_kind`, `since` and `until` on the jobs'
creation time; every field narrows it): at most `limit` of the matching dead jobs, newest
first. A redriven job is queued again as a new run: its attempt numbers go on from the one
it died at (so no event of the earlier run can touch it), its retries start over, its
earlier attempts stay in its history with a redrive entry (who, when, why it had died), and
its user gets the new run's outcome by e-mail. At most `rate_per_second` jobs are redriven
a second, so the answer takes about `matched / rate_per_second` seconds. `dry_run` lists
what would be redriven and changes nothing. A job is redriven once: a repeat finds it no
longer dead and lists it in `skipped`; with the same `Idempotency-Key` a repeat answers the
first result again."""


@router.post(
    "/v1/dead/redrive",
    responses=errors(*AUTH_ERRORS, *BODY_ERRORS),
    dependencies=[JSON_BODY],
    description="Redrive the calling app's dead jobs (`app_id`, if given, must be the "
    "app's own)." + _HOW,
)
async def redrive_own(
    body: RedriveRequest,
    app: AppDep,
    store: StoreDep,
    bus: BusDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> RedriveResult:
    """Redrive the calling app's dead jobs (`app_id`, if given, must be the app's own)."""
    if body.app_id is not None and body.app_id != app.app_id:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail="an app redrives only its own jobs: leave app_id out",
        )
    return await operations.redrive(
        store,
        bus,
        settings,
        body,
        app_id=app.app_id,
        by=operations.by_app(app.app_id),
        idempotency_key=idempotency_key,
    )


@router.post(
    "/v1/admin/dead/redrive",
    responses=errors(*ADMIN_ERRORS, *BODY_ERRORS),
    dependencies=[JSON_BODY],
    description="Redrive any app's dead jobs (`app_id`: one app's)." + _HOW,
)
async def redrive_any(
    body: RedriveRequest,
    _admin: AdminDep,
    store: StoreDep,
    bus: BusDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> RedriveResult:
    """Redrive any app's dead jobs (`app_id`: one app's)."""
    return await operations.redrive(
        store,
        bus,
        settings,
        body,
        app_id=None,
        by=operations.ADMIN,
        idempotency_key=idempotency_key,
    )
