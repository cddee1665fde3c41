"""Serving models: a bounded LRU of classifiers keyed by version id, sha256-checked when loaded.

The key is the version id, so activating another version simply makes the next request load (or find)
that version; nothing has to be invalidated. A version (one learner's) loads under its own lock, so a
slow load holds up only the requests for that version, never another learner's predictions.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from core.errors import ArtifactCorrupt, VersionPurged
from core.orm import Learner, ModelVersion
from core.storage import ArtifactStore
from service.views import get_version

log = logging.getLogger(__name__)


def serving_device(name: str) -> str:
    """The torch device for DGM_SERVE_DEVICE: `auto` takes the GPU when there is one; `cuda` needs one."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(
            f"DGM_SERVE_DEVICE={name}, but torch sees no GPU (torch {torch.__version__}); "
            "set DGM_SERVE_DEVICE=auto or cpu, or install a CUDA build of torch"
        )
    return name


def served(
    sessions: sessionmaker[Session], cache: ClassifierCache, learner: Learner, number: int | None
) -> tuple[ModelVersion, Any]:
    """Version `number` of `learner` (None: the active one) and its classifier, through the app's cache."""
    with sessions() as s:
        version = get_version(s, learner, number)
    return version, cache.get(version)


def refuse_purged(version: ModelVersion) -> None:
    """410 for a version whose files were purged (it held a forgotten class): it never serves again."""
    if version.status == "purged":
        when = f" on {version.purged_at:%Y-%m-%d %H:%M} UTC" if version.purged_at else ""
        raise VersionPurged(
            f"version {version.number} was purged{when}: it held a class that was since forgotten, and its "
            "files are deleted; use the active version or another published one"
        )


class ClassifierCache:
    def __init__(self, store: ArtifactStore, size: int, device: str = "cpu") -> None:
        self.store, self.size, self.device = store, size, device
        self._items: OrderedDict[int, Any] = OrderedDict()
        self._lock = threading.Lock()  # guards the dicts and counters; held for microseconds, never a load
        self._loading: dict[int, threading.Lock] = {}  # version id -> its load lock, while one is wanted
        self.hits = self.misses = self.evictions = 0  # read by /metrics
        self.load_failures = 0  # damaged or missing classifier files met

    def get(self, version: ModelVersion) -> Any:
        refuse_purged(version)
        clf = self._cached(version.id)
        if clf is not None:
            return clf
        with self._lock:
            loading = self._loading.setdefault(version.id, threading.Lock())
        with loading:  # one load per version; requests for it meanwhile wait here, others go on
            clf = self._cached(version.id)  # loaded by the request this one waited for
            if clf is not None:
                return clf
            try:
                with self._lock:
                    self.misses += 1
                clf = self._load(version)
                with self._lock:
                    self._items[version.id] = clf
                    while len(self._items) > self.size:
                        self._items.popitem(last=False)
                        self.evictions += 1
                return clf
            finally:
                with self._lock:
                    if self._loading.get(version.id) is loading:  # not a later request's after a failure
                        del self._loading[version.id]

    def _cached(self, key: int) -> Any | None:
        with self._lock:
            clf = self._items.get(key)
            if clf is not None:
                self.hits += 1
                self._items.move_to_end(key)
            return clf

    def _load(self, version: ModelVersion) -> Any:
        from dgm import CheckpointError
        from dgm.inference import Classifier

        path = self.store.path(version.classifier_uri)
        if not path.is_file():
            raise self._refuse(
                version,
                f"the classifier file of version {version.number} is missing ({version.classifier_uri}); "
                "restore the artifact store or activate another version",
            )
        try:
            return Classifier.load(path, device=self.device, sha256=version.classifier_sha256)
        except CheckpointError as exc:
            raise self._refuse(
                version,
                f"version {version.number} cannot be served: {exc}; restore the file or activate another "
                "version",
            ) from exc

    def _refuse(self, version: ModelVersion, detail: str) -> ArtifactCorrupt:
        """Report a damaged or missing artifact (operators must act on it) and build the API error.

        Nothing is cached, so each request checks again and a restored file serves at once.
        """
        with self._lock:
            self.load_failures += 1
        log.error("learner id %s: %s", version.learner_id, detail)
        return ArtifactCorrupt(detail)

    def evict(self, version_ids: list[int]) -> None:
        """Drop these versions' classifiers (purged, or their learner deleted)."""
        with self._lock:
            for vid in version_ids:
                self._items.pop(vid, None)

    def __len__(self) -> int:
        return len(self._items)
