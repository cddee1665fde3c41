"""GET /metrics: the app's Prometheus registry (service/metrics.py says what it counts)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.deps import EveryLearnerAdminKey, MetricsDep


def metrics_router(public: bool) -> APIRouter:
    """GET /metrics. Public by default: Prometheus scrape targets rarely carry credentials, and nothing here
    names data beyond learner names. DGM_METRICS_PUBLIC=false makes it an admin route."""
    router = APIRouter(tags=["health"])

    @router.get("/metrics", response_class=Response, dependencies=[] if public else [EveryLearnerAdminKey])
    async def metrics(metrics: MetricsDep) -> Response:
        body = await run_in_threadpool(generate_latest, metrics.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return router
