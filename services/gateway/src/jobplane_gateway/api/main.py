"""The API's routers, as the app includes them."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

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

# The busiest first (submits, then backends' results), each included in the app itself, not
# through one `api_router`: FastAPI (since 0.137) matches a request against every route of
# the routers before the one that takes it, once more at each level of nesting. Nested and
# the submit route fifth, a submit cost ~60 µs more (bench/README.md, "Routing").
routers: tuple[APIRouter, ...] = (
    jobs.router,
    results.router,
    users.router,
    apps.router,
    health.router,
    metrics.router,
    admin.router,
    dead.router,
    results_page.router,
)


def include_routers(app: FastAPI) -> None:
    for router in routers:
        app.include_router(router)
