"""Model versions, shared by the /v1 routes and the dashboard: activation (roll back or forward) and the
generator's sample grid, with its per-app cache."""

from __future__ import annotations

import threading
from collections import OrderedDict

from sqlalchemy.orm import Session, sessionmaker

from core import activation
from core.errors import ArtifactCorrupt
from core.images import SAMPLES_PER_CLASS, render_grid
from core.orm import Learner, ModelVersion
from core.schemas import VersionRead
from core.storage import ArtifactStore
from service.classifiers import refuse_purged
from service.views import get_learner, get_version, versions_read


class SampleGrids:
    """Each version's samples.png, rendered from its checkpoint once and kept (a version never changes);
    one per app. `png` is blocking (torch): call it from the thread pool."""

    def __init__(
        self, sessions: sessionmaker[Session], store: ArtifactStore, device: str, size: int = 16
    ) -> None:
        self.sessions, self.store, self.device, self.size = sessions, store, device, size
        self.items, self.lock = OrderedDict[int, bytes](), threading.Lock()

    def png(self, name: str, number: int) -> bytes:
        """The PNG grid of images version `number` of learner `name` generates per class."""
        with self.sessions() as s:
            version = get_version(s, get_learner(s, name), number)
            refuse_purged(version)
            vid, uri, sha = version.id, version.checkpoint_uri, version.checkpoint_sha256
        with self.lock:
            if (cached := self.items.get(vid)) is not None:
                return cached
        png = self._render(uri, sha, number)
        with self.lock:
            self.items[vid] = png
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return png

    def _render(self, uri: str, sha: str, number: int) -> bytes:
        self.store.verify(uri, sha)
        from dgm import CheckpointError
        from dgm import Learner as Generator  # the library's learner, not the table

        try:
            learner = Generator.load(self.store.path(uri), device=self.device)
        except CheckpointError as exc:
            raise ArtifactCorrupt(f"version {number}: {exc}") from exc
        return render_grid({c: learner.sample(c, n=SAMPLES_PER_CLASS, seed=0) for c in learner.classes})

    def evict(self, keys: list[int]) -> None:
        """Drop these versions' grids (purged, or their learner deleted: SQLite may reuse the ids)."""
        with self.lock:
            for key in keys:
                self.items.pop(key, None)


def activate_number(session: Session, name: str, number: int) -> VersionRead:
    """Activate version `number` of learner `name`, commit, and return the version as it now reads."""
    learner = get_learner(session, name)
    activate(session, learner, get_version(session, learner, number))
    session.commit()
    return next(v for v in versions_read(session, learner) if v.number == number)


def activate(session: Session, learner: Learner, version: ModelVersion) -> None:
    """Make `version` the one that serves (the caller commits): the 410 for a purged version, then
    core/activation.py, the one writer of activation (POST .../rollout/promote comes here too)."""
    refuse_purged(version)  # 410: its files are gone
    activation.activate(session, learner.id, version.id)
