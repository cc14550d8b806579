"""A bound on the raw request body, checked before anything parses it.

The exact limits (payload, result: see Settings) are checked on the JSON text by the routes;
this one only keeps a huge body (17 MB, say) from being read into memory, parsed and sent
on towards the store: a declared ``Content-Length`` over the bound is refused at once, and
a streamed body is cut off as soon as it passes the bound.
"""

from __future__ import annotations

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobplane_gateway.middleware import send_json


class _TooLarge(HTTPException):
    """Raised while the body is read; an HTTPException, so FastAPI passes it on as is."""


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(413, detail=self.detail())
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(send)

    def detail(self) -> str:
        return (
            f"request body too large: the limit is {self.max_bytes} bytes "
            "(twice MAX_PAYLOAD_BYTES or MAX_RESULT_BYTES, room for JSON escapes)"
        )

    async def _refuse(self, send: Send) -> None:
        await send_json(send, 413, {"detail": self.detail()}, ((b"connection", b"close"),))
