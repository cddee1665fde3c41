"""Liveness and readiness (database, broker, artifact store). No key needed.

Readiness does not depend on training workers: the API answers predictions without one, and a load
balancer that dropped every replica while the workers restart would turn a training outage into a full
outage. /readyz says how many workers are alive (`workers_alive`, `training`) for people and monitors;
alert on `dgm_workers_alive == 0` in /metrics.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.deps import CeleryDep, SessionsDep, SettingsDep, StoreDep
from service.views import readiness

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(settings: SettingsDep, sessions: SessionsDep, celery: CeleryDep, store: StoreDep) -> JSONResponse:
    body, ok = readiness(settings, sessions, celery, store)
    return JSONResponse(body, status_code=200 if ok else 503)
