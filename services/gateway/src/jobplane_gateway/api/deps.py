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


# Every dependency reads the connections and the settings from the app's state itself rather
# than through ``ConnsDep`` or ``SettingsDep``: FastAPI 0.165 works out every dependency's
# cache key again at each request, and those nested ones cost an eighth of a submit's CPU
# (1.0 against 0.87 ms, the gateway's app in process, alternating runs).
def _conns(request: Request) -> Connections:
    conns: Connections = request.app.state.conns
    return conns


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_conns(request: Request) -> Connections:
    return _conns(request)


async def get_settings(request: Request) -> Settings:
    return _settings(request)


ConnsDep = Annotated[Connections, Depends(get_conns)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_store(request: Request) -> JobStore:
    return _conns(request).store


async def get_publisher(request: Request) -> Publisher:
    return _conns(request).publisher


async def get_topics(request: Request) -> Topics:
    return _conns(request).topics


async def get_bus(request: Request) -> EventBus:
    conns = _conns(request)
    return EventBus(conns.publisher, conns.topics, _settings(request).publish_timeout_seconds)


StoreDep = Annotated[JobStore, Depends(get_store)]
BusDep = Annotated[EventBus, Depends(get_bus)]
PublisherDep = Annotated[Publisher, Depends(get_publisher)]
TopicsDep = Annotated[Topics, Depends(get_topics)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def get_current_app(request: Request, credentials: Credentials) -> App:
    return await _current_app(_conns(request).store, credentials)


async def _current_app(store: JobStore, credentials: HTTPAuthorizationCredentials | None) -> App:
    if credentials is None:
        raise _unauthorized("missing API key: send 'Authorization: Bearer <api key>'")
    key = credentials.credentials
    app_id = app_id_of(key)
    # Through the cache: the submit path's one store command is the job's insert.
    app = await store.cached_app(app_id) if app_id else None
    if app is None or not api_key_matches(key, app.api_key_hash):
        raise _unauthorized("invalid API key")
    return app


async def get_app_or_admin(request: Request, credentials: Credentials) -> App | None:
    """The calling app, or None for the administrators (the admin key)."""
    admin_key = _settings(request).admin_api_key
    if credentials is not None and is_admin_key(credentials.credentials, admin_key):
        return None
    return await _current_app(_conns(request).store, credentials)


async def require_admin(request: Request, credentials: Credentials) -> None:
    if credentials is None:
        raise _unauthorized("missing admin API key: send 'Authorization: Bearer <admin key>'")
    if not is_admin_key(credentials.credentials, _settings(request).admin_api_key):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="this route needs the admin API key")


async def get_callback_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_callback_bearer)],
) -> str:
    if credentials is None:
        raise _unauthorized("missing callback token: send 'Authorization: Bearer <token>'")
    return credentials.credentials


NOT_JSON = "the request body must be JSON: send it with 'Content-Type: application/json'"


def is_json_content_type(value: str | None) -> bool:
    """``application/json`` or ``application/<something>+json``, any parameters."""
    media_type = (value or "").split(";", 1)[0].strip().lower()
    main, _, sub = media_type.partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


async def require_json_body(request: Request) -> None:
    """``415`` for a body not declared JSON (another media type, or none). Without this
    FastAPI validates such a body as bytes and answers 422 "Input should be a valid
    dictionary", which hides the client's real mistake."""
    if not is_json_content_type(request.headers.get("content-type")):
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, detail=NOT_JSON)


# On every route that reads a JSON body (``dependencies=[JSON_BODY]``).
JSON_BODY = Depends(require_json_body)


async def get_trace_id(request: Request) -> str:
    trace_id: str = request.state.trace_id
    return trace_id


AppDep = Annotated[App, Depends(get_current_app)]
AdminDep = Annotated[None, Depends(require_admin)]
# None: the administrators.
AppOrAdminDep = Annotated[App | None, Depends(get_app_or_admin)]
CallbackTokenDep = Annotated[str, Depends(get_callback_token)]
TraceIdDep = Annotated[str, Depends(get_trace_id)]
