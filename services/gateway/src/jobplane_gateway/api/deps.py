"""Dependencies of the routes: connections, the authenticated caller, the trace id.

Every dependency is ``async def``, even those that never await: FastAPI runs a plain ``def``
dependency in a worker thread, and those hand-offs cost a fifth of the gateway's CPU per
request (profiled under the benchmark)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from jobplane.connections import Connections
from jobplane.kafka import Publisher
from jobplane.store import App, JobStore
from jobplane.topics import Topics

from jobplane_gateway.config import Settings
from jobplane_gateway.publishing import EventBus
from jobplane_gateway.security import api_key_matches, app_id_of, is_admin_key

_bearer = HTTPBearer(auto_error=False, description="An app API key or the admin API key")
_callback_bearer = HTTPBearer(
    auto_error=False, scheme_name="CallbackToken", description="The job attempt's callback token"
)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


async def get_conns(request: Request) -> Connections:
    conns: Connections = request.app.state.conns
    return conns


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


ConnsDep = Annotated[Connections, Depends(get_conns)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_store(conns: ConnsDep) -> JobStore:
    return conns.store


async def get_publisher(conns: ConnsDep) -> Publisher:
    return conns.publisher


async def get_topics(conns: ConnsDep) -> Topics:
    return conns.topics


async def get_bus(conns: ConnsDep, settings: SettingsDep) -> EventBus:
    return EventBus(conns.publisher, conns.topics, settings.publish_timeout_seconds)


StoreDep = Annotated[JobStore, Depends(get_store)]
BusDep = Annotated[EventBus, Depends(get_bus)]
PublisherDep = Annotated[Publisher, Depends(get_publisher)]
TopicsDep = Annotated[Topics, Depends(get_topics)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def get_current_app(store: StoreDep, credentials: Credentials) -> App:
    if credentials is None:
        raise _unauthorized("missing API key: send 'Authorization: Bearer <api key>'")
    key = credentials.credentials
    app_id = app_id_of(key)
    # Through the cache: the submit path's one store command is the job's insert.
    app = await store.cached_app(app_id) if app_id else None
    if app is None or not api_key_matches(key, app.api_key_hash):
        raise _unauthorized("invalid API key")
    return app


async def require_admin(settings: SettingsDep, credentials: Credentials) -> None:
    if credentials is None:
        raise _unauthorized("missing admin API key: send 'Authorization: Bearer <admin key>'")
    if not is_admin_key(credentials.credentials, settings.admin_api_key):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="this route needs the admin API key")


async def get_callback_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_callback_bearer)],
) -> str:
    if credentials is None:
        raise _unauthorized("missing callback token: send 'Authorization: Bearer <token>'")
    return credentials.credentials


async def get_trace_id(request: Request) -> str:
    trace_id: str = request.state.trace_id
    return trace_id


AppDep = Annotated[App, Depends(get_current_app)]
AdminDep = Annotated[None, Depends(require_admin)]
CallbackTokenDep = Annotated[str, Depends(get_callback_token)]
TraceIdDep = Annotated[str, Depends(get_trace_id)]
