"""The gateway process: the REST API on uvicorn, over the shared connections."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI
from jobplane import service
from jobplane.connections import Connections, connect
from jobplane.logs import fields

from jobplane_gateway.api.main import api_router
from jobplane_gateway.config import Settings
from jobplane_gateway.middleware import TraceMiddleware

log = logging.getLogger(__name__)

SERVICE = "gateway"


def create_app(settings: Settings, conns: Connections | None = None) -> FastAPI:
    """The ASGI app. With ``conns`` it uses them as they are (the caller owns them); without,
    its lifespan opens its own connections."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if conns is not None:
            yield
            return
        async with connect(settings, SERVICE) as opened:
            app.state.conns = opened
            yield

    app = FastAPI(
        title="Jobplane gateway",
        summary="Submit long-running jobs, follow them, and report their results.",
        version="1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    if conns is not None:
        app.state.conns = conns
    app.add_middleware(TraceMiddleware)
    app.include_router(api_router)
    return app


async def serve(settings: Settings) -> None:
    """Serve the API until cancelled; a cancel stops the server gracefully."""
    # Bind here: uvicorn would sys.exit() on a bind error; we want the OSError.
    sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    sock.set_inheritable(True)
    async with connect(settings, SERVICE) as conns:
        config = uvicorn.Config(
            create_app(settings, conns),
            log_config=None,  # uvicorn's own lines go to the JSON root handler
            access_log=False,  # TraceMiddleware writes one JSON line per request
            server_header=False,
            lifespan="off",  # the connections are open already
        )
        server = uvicorn.Server(config)
        server_task = asyncio.create_task(server.serve(sockets=[sock]))
        log.info(
            "listening",
            extra=fields(host=settings.host, port=sock.getsockname()[1], url=settings.public_url),
        )
        try:
            await asyncio.shield(server_task)
        except asyncio.CancelledError:
            server.should_exit = True
            await server_task  # finish the requests in flight, close the socket
            raise
        finally:
            sock.close()


def run() -> None:
    settings = Settings()  # type: ignore[call-arg]  # admin_api_key comes from the environment
    service.run(SERVICE, serve(settings), settings.log_level)
