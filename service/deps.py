"""Dependencies: settings, a database session per request, the artifact store, and API-key scopes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from core.errors import Forbidden, Unauthorized
from core.keys import SCOPES, authenticate, is_key
from core.settings import Settings
from core.storage import ArtifactStore


# Cheap dependencies are `async def`: FastAPI runs a plain `def` dependency in the thread pool, and each
# hop costs a fraction of a millisecond per request, which the predict path should not pay.
async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_db(request: Request) -> Iterator[Session]:
    """One session per request; routes that change things commit once, at their end."""
    with request.app.state.sessions() as session:
        yield session


async def get_store(request: Request) -> ArtifactStore:
    return request.app.state.store


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_db)]
StoreDep = Annotated[ArtifactStore, Depends(get_store)]


def require(scope: str | None) -> Callable[..., list[str]]:
    """A dependency that admits keys holding `scope` (admin holds all; None: any valid key)."""

    async def check(request: Request) -> list[str]:
        header = request.headers.get("authorization", "")
        kind, _, key = header.partition(" ")
        key = key.strip()
        if kind.lower() != "bearer" or not key:
            raise Unauthorized("missing API key; send 'Authorization: Bearer <key>'")
        settings: Settings = request.app.state.settings
        admin = settings.admin_key.get_secret_value() if settings.admin_key else None
        if admin and is_key(key, admin):
            scopes = list(SCOPES)  # the bootstrap key: no database round trip
        else:
            scopes = await run_in_threadpool(_lookup, request, key)
        if scope is not None and scope not in scopes and "admin" not in scopes:
            raise Forbidden(f"this API key lacks the '{scope}' scope; ask an admin for a key that has it")
        return scopes

    check.scope = scope  # type: ignore[attr-defined]  # read by the test that every route is guarded
    return check


def _lookup(request: Request, key: str) -> list[str]:
    with request.app.state.sessions() as session:
        return authenticate(session, key, None)


AnyKey = Depends(require(None))
PredictKey = Depends(require("predict"))
TrainKey = Depends(require("train"))
AdminKey = Depends(require("admin"))
