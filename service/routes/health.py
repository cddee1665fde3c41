"""Liveness and readiness (database, broker, artifact store). No key needed."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

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
    return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)


def _database(state) -> None:  # noqa: ANN001
    with state.sessions() as s:
        s.execute(text("SELECT 1"))


def _broker(state) -> None:  # noqa: ANN001
    with state.celery.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


def _store(state) -> None:  # noqa: ANN001
    state.store.ready()
