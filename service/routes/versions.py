"""Model versions: list, activate (roll back or forward), and the generator's sample grid."""

from __future__ import annotations

import threading
from collections import OrderedDict

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from core import activation
from core.errors import ArtifactCorrupt
from core.images import SAMPLES_PER_CLASS, render_grid
from core.orm import Learner, ModelVersion
from core.schemas import VersionRead
from service.classifiers import refuse_purged
from service.deps import AdminKey, AnyKey, SessionDep
from service.views import get_learner, get_version, versions_read

router = APIRouter(prefix="/v1/learners", tags=["versions"])


class GridCache:
    """version id -> samples PNG (a version never changes); one per app."""

    def __init__(self, size: int = 16) -> None:
        self.size, self.items, self.lock = size, OrderedDict[int, bytes](), threading.Lock()

    def get(self, key: int) -> bytes | None:
        with self.lock:
            return self.items.get(key)

    def put(self, key: int, png: bytes) -> None:
        with self.lock:
            self.items[key] = png
            while len(self.items) > self.size:
                self.items.popitem(last=False)

    def evict(self, keys: list[int]) -> None:
        """Drop these versions' grids (purged, or their learner deleted: SQLite may reuse the ids)."""
        with self.lock:
            for key in keys:
                self.items.pop(key, None)


@router.get("/{name}/versions", response_model=list[VersionRead], dependencies=[AnyKey])
def list_versions(name: str, session: SessionDep) -> list[VersionRead]:
    return versions_read(session, get_learner(session, name))


@router.post("/{name}/versions/{number}/activate", response_model=VersionRead, dependencies=[AdminKey])
def activate_version(name: str, number: int, session: SessionDep) -> VersionRead:
    """Serve version `number` from now on; the learner's next task also trains from it.

    A held version (the regression gate kept it back) may be activated: it becomes published.
    """
    learner = get_learner(session, name)
    activate(session, learner, get_version(session, learner, number))
    session.commit()
    return next(v for v in versions_read(session, learner) if v.number == number)


def activate(session: Session, learner: Learner, version: ModelVersion) -> None:
    """Make `version` the one that serves (the caller commits): core/activation.py, after the 410 for a
    purged version. POST .../rollout/promote comes here too."""
    refuse_purged(version)  # 410: its files are gone
    activation.activate(session, learner.id, version.id)


@router.get(
    "/{name}/versions/{number}/samples.png",
    response_class=Response,
    dependencies=[AnyKey],
    responses={200: {"content": {"image/png": {}}}},
)
async def version_samples(name: str, number: int, request: Request) -> Response:
    png = await run_in_threadpool(_samples_png, request, name, number)
    return Response(png, media_type="image/png")


def _samples_png(request: Request, name: str, number: int) -> bytes:
    with request.app.state.sessions() as s:
        version = get_version(s, get_learner(s, name), number)
        refuse_purged(version)
        vid, uri, sha = version.id, version.checkpoint_uri, version.checkpoint_sha256
    grids: GridCache = request.app.state.sample_grids
    if (cached := grids.get(vid)) is not None:
        return cached
    store = request.app.state.store
    store.verify(uri, sha)
    from dgm import CheckpointError, Learner

    try:
        learner = Learner.load(store.path(uri), device=request.app.state.classifiers.device)
    except CheckpointError as exc:
        raise ArtifactCorrupt(f"version {number}: {exc}") from exc
    png = render_grid({c: learner.sample(c, n=SAMPLES_PER_CLASS, seed=0) for c in learner.classes})
    grids.put(vid, png)
    return png
