"""Liveness and readiness (database, broker, artifact store). No key needed.

Readiness does not depend on training workers: the API answers predictions without one, and a load
balancer that dropped every replica while the workers restart would turn a training outage into a full
outage. /readyz says how many workers are alive (`workers_alive`, `training`) for people and monitors;
alert on `dgm_workers_alive == 0` in /metrics.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from core.liveness import workers

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    checks: dict[str, str] = {}
    for name, probe in (("database", _database), ("broker", _broker), ("artifact_store", _store)):
        try:
            probe(state)
            checks[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready; say which and why
            checks[name] = f"{type(exc).__name__}: {exc}"
    ok = all(v == "ok" for v in checks.values())
    body: dict = {"ready": ok, "checks": checks, "workers_alive": None, "training": "unknown: no database"}
    if checks["database"] == "ok":
        with state.sessions() as s:
            live = workers(s, state.settings, state.settings.queue)
        body.update(workers_alive=live.alive, training=live.training())
    return JSONResponse(body, status_code=200 if ok else 503)


def _database(state) -> None:  # noqa: ANN001
    with state.sessions() as s:
        s.execute(text("SELECT 1"))


def _broker(state) -> None:  # noqa: ANN001
    with state.celery.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


def _store(state) -> None:  # noqa: ANN001
    state.store.ready()
