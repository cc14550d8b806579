"""The gateway process: the REST API on uvicorn and the outbox relay, over the shared
connections."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI
from jobplane import metrics, service, tracing
from jobplane.connections import Connections, connect
from jobplane.logs import fields

from jobplane_gateway import backend_contract, dashboard, docs, errors, publishing, relay
from jobplane_gateway.api.main import include_routers
from jobplane_gateway.bodylimit import BodySizeLimit
from jobplane_gateway.config import Settings
from jobplane_gateway.middleware import TraceMiddleware

log = logging.getLogger(__name__)

SERVICE = "gateway"
# Room in a raw request body for JSON escapes and whitespace around the payload or result.
RAW_BODY_FACTOR = 2
RAW_BODY_SLACK_BYTES = 64 * 1024


def max_raw_body_bytes(settings: Settings) -> int:
    largest = max(settings.max_payload_bytes, settings.max_result_bytes)
    return RAW_BODY_FACTOR * largest + RAW_BODY_SLACK_BYTES


def describe_limits(settings: Settings) -> str:
    """The limits of this gateway, for the OpenAPI document (they are settings)."""
    return (
        "Limits of this gateway: a job's payload at most "
        f"{settings.max_payload_bytes} bytes of JSON text (`MAX_PAYLOAD_BYTES`), a result at "
        f"most {settings.max_result_bytes} bytes (`MAX_RESULT_BYTES`), a request body at most "
        f"{max_raw_body_bytes(settings)} bytes; over them, `413`. Timeouts are whole seconds "
        "from 1 to 86400. A `503` carries `Retry-After` "
        f"({settings.retry_after_seconds} s). The platform's call to an app's backend is "
        "described under *webhooks* (`job-dispatch`), and so is its notice of each outcome "
        "to an app's `webhook_url` (`job-outcome`)."
    )


def create_app(settings: Settings, conns: Connections | None = None) -> FastAPI:
    """The ASGI app. With ``conns`` it uses them as they are (the caller owns them and runs
    the relay, see `serve`); without, its lifespan opens its own and runs the relay."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if conns is not None:
            yield
            return
        async with connect(settings, SERVICE) as opened, relaying(opened, settings):
            app.state.conns = opened
            yield
            await publishing.drain(settings.publish_timeout_seconds)

    app = FastAPI(
        title="Jobplane gateway",
        summary="Submit long-running jobs, follow them, and report their results.",
        description=describe_limits(settings),
        version="1.0",
        lifespan=lifespan,
        # The gateway traces each request itself (TraceMiddleware: a span in the job's trace,
        # see jobplane.tracing) and counts them for Prometheus. FastAPI's own telemetry would
        # only add a second server span, or, as jobplane.tracing sets no global provider, a
        # look at OpenTelemetry's global providers at every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # Served by jobplane_gateway.docs from local assets (FastAPI's own use a CDN).
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    if conns is not None:
        app.state.conns = conns
    errors.install(app, settings.retry_after_seconds)
    app.add_middleware(BodySizeLimit, max_bytes=max_raw_body_bytes(settings))
    app.add_middleware(TraceMiddleware)
    include_routers(app)
    docs.install(app)
    dashboard.install(app)
    backend_contract.install(app)
    return app


@contextlib.asynccontextmanager
async def relaying(conns: Connections, settings: Settings) -> AsyncIterator[relay.Relay]:
    """The outbox relay runs in the background for the block."""
    outbox = relay.Relay(conns.store, conns.publisher, conns.topics, settings)
    async with relay.running(outbox):
        yield outbox


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the process's (jobplane.service) cancels
    `serve`, which stops the server. uvicorn's would re-raise the SIGTERM once stopped,
    which the process would take for a second signal and exit 1."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def serve(settings: Settings) -> None:
    """Serve the API and run the relay until cancelled. A cancel (SIGTERM) stops intake,
    lets the requests in flight finish (at most ``shutdown_timeout_seconds``), stops the
    relay, then closes the connections (the producer flushes what it holds)."""
    # Bind here: uvicorn would sys.exit() on a bind error; we want the OSError.
    sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    sock.set_inheritable(True)
    with (
        tracing.traced(SERVICE),
        metrics.exported(settings.metrics_port, settings.metrics_host, in_process=True),
    ):
        await _serve(settings, sock)


async def _serve(settings: Settings, sock: socket.socket) -> None:
    async with connect(settings, SERVICE) as conns, relaying(conns, settings):
        config = uvicorn.Config(
            create_app(settings, conns),
            log_config=None,  # uvicorn's own lines go to the JSON root handler
            access_log=False,  # TraceMiddleware writes one JSON line per request
            server_header=False,
            lifespan="off",  # the connections are open already
            timeout_graceful_shutdown=settings.shutdown_timeout_seconds,
        )
        server = _Server(config)
        server_task = asyncio.create_task(server.serve(sockets=[sock]))
        log.info(
            "listening",
            extra=fields(host=settings.host, port=sock.getsockname()[1], url=settings.public_url),
        )
        try:
            await asyncio.shield(server_task)
        except asyncio.CancelledError:
            log.info("stopping: no new requests, finishing those in flight")
            server.should_exit = True
            await server_task  # finish the requests in flight, close the socket
            await publishing.drain(settings.publish_timeout_seconds)
            raise
        finally:
            sock.close()


def run() -> None:
    settings = Settings()  # type: ignore[call-arg]  # admin_api_key comes from the environment
    service.run(SERVICE, serve(settings), settings.log_level)
