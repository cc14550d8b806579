"""``jobplane-demo``: run the demo thumbnail backend with uvicorn."""

from __future__ import annotations

import logging

import uvicorn

from jobplane_demo.app import create_app
from jobplane_demo.config import DemoSettings


def run() -> None:
    settings = DemoSettings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")
