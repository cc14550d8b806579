"""Receive the app's outcome webhooks: verify the signature, drop repeats, act.

    JOBPLANE_WEBHOOK_SECRET=whsec_... uvicorn webhook_receiver:app --port 8002

Register the app's ``webhook_url`` as this server's ``/jobplane/outcomes``.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from jobplane_client.webhooks import (
    DELIVERY_ID_HEADER,
    SIGNATURE_HEADER,
    WebhookSignatureError,
    parse_event,
)


def create_app(secret: str) -> FastAPI:
    app = FastAPI()
    app.state.outcomes = []
    seen: set[str] = set()

    @app.post("/jobplane/outcomes")
    async def outcome(request: Request) -> JSONResponse:
        try:
            # The raw bytes, before any parsing: the signature covers exactly them.
            event: dict[str, Any] = parse_event(
                secret, await request.body(), request.headers.get(SIGNATURE_HEADER)
            )
        except WebhookSignatureError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)
        delivery = request.headers.get(DELIVERY_ID_HEADER, event["id"])
        if delivery not in seen:  # a retried delivery carries the same id
            seen.add(delivery)
            app.state.outcomes.append(event)
        # Answer 2xx fast; anything else makes Jobplane try again later.
        return JSONResponse({"ok": True})

    return app


app = create_app(os.environ.get("JOBPLANE_WEBHOOK_SECRET", ""))
