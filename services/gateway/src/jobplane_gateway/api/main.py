from __future__ import annotations

from fastapi import APIRouter

from jobplane_gateway.api.routes import (
    admin,
    apps,
    dead,
    health,
    jobs,
    metrics,
    results,
    results_page,
    users,
)

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(metrics.router)
api_router.include_router(apps.router)
api_router.include_router(users.router)
api_router.include_router(jobs.router)
api_router.include_router(results.router)
api_router.include_router(admin.router)
api_router.include_router(dead.router)
api_router.include_router(results_page.router)
