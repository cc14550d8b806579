"""The operators' dashboard: server-rendered pages (Jinja2) made live with htmx, served by
the gateway under ``/dashboard`` with every asset local (no CDN, no JavaScript build).

It reads and acts through the admin API's own functions (listing, stats, timeline, redrive,
cancel), so the pages and the API can never disagree. Access: the admin key as a bearer
token, or a session cookie the login page hands out for it (see `session`).
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from jobplane_gateway.dashboard.views import PREFIX, router

STATIC_PATH = f"{PREFIX}/static"


def install(app: FastAPI) -> None:
    app.mount(
        STATIC_PATH,
        StaticFiles(directory=str(files("jobplane_gateway.dashboard") / "static")),
        name="dashboard-static",
    )
    app.include_router(router)


__all__ = ["PREFIX", "install"]
