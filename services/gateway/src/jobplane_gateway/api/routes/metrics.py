"""Prometheus metrics of this gateway process (``jobplane.metrics``), on the API's port."""

from __future__ import annotations

from fastapi import APIRouter, Response
from jobplane import metrics

router = APIRouter(tags=["health"])


# Not in the OpenAPI document: it is for Prometheus, not for apps.
@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics() -> Response:
    return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE_LATEST)
