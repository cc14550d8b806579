"""The API's own documentation pages, served without any CDN.

Swagger UI (``/docs``) and ReDoc (``/redoc``) load their JavaScript, CSS and favicon from
the gateway itself (``/docs-assets/``): the static files that the ``fastapi-offline``
package ships (MIT; Swagger UI is Apache-2.0, ReDoc MIT). ReDoc's Google Fonts are left
out, so the pages work on a machine without internet.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_PATH = "/docs-assets"
DOCS_PATH = "/docs"
REDOC_PATH = "/redoc"
_ASSETS = files("fastapi_offline") / "static"


def install(app: FastAPI) -> None:
    """Serve the assets and both pages (create the app with ``docs_url=None`` and
    ``redoc_url=None``: FastAPI's own pages point at a CDN)."""
    app.mount(ASSETS_PATH, StaticFiles(directory=str(_ASSETS)), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    favicon = f"{ASSETS_PATH}/favicon.png"

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=favicon,
        )

    @app.get(REDOC_PATH, include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=favicon,
            with_google_fonts=False,
        )
