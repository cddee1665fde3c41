"""The classifier cache loads each version under its own lock: one learner's slow load holds up only the
requests for it, and concurrent requests for one version load it once."""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from core.db import session_factory
from core.errors import ArtifactCorrupt
from core.orm import Learner, ModelVersion
from core.settings import Settings
from core.storage import ArtifactStore
from service.classifiers import ClassifierCache
from tests.service.live import live_server, train_learner
from tests.service.support import auth, digits

SLOW_S = 2.5  # the slow learner's classifier load


def test_classifier_cache_slow_load_blocks_no_other_learner(
    client: TestClient, pg_settings: Settings, trained: str, monkeypatch: pytest.MonkeyPatch
):
    quick = f"quick-{uuid.uuid4().hex[:6]}"
    train_learner(client, quick, [[2, 3]])
    with session_factory(pg_settings)() as s:
        slow_id = s.scalar(select(Learner.id).where(Learner.name == trained))
    loading, loaded = threading.Event(), threading.Event()
    load = ClassifierCache._load

    def slow_load(self: ClassifierCache, version: ModelVersion) -> Any:
        if version.learner_id != slow_id:
            return load(self, version)
        loading.set()
        time.sleep(SLOW_S)
        try:
            return load(self, version)
        finally:
            loaded.set()

    monkeypatch.setattr(ClassifierCache, "_load", slow_load)
    x, _ = digits([2], per_class=1)

    def ask(url: str, name: str) -> tuple[int, float]:
        with httpx.Client(base_url=url, timeout=60) as http:
            start = time.perf_counter()
            r = http.post(f"/v1/learners/{name}/predict", json={"images": x.tolist()}, headers=auth())
            return r.status_code, time.perf_counter() - start

    with live_server(pg_settings) as url:
        assert ask(url, quick)[0] == 200  # the quick learner's classifier is loaded and cached
        baseline = [ask(url, quick)[1] for _ in range(10)]
        with ThreadPoolExecutor(1) as pool:
            slow = pool.submit(ask, url, trained)
            assert loading.wait(30), "the slow learner's load never started"
            during = [ask(url, quick) for _ in range(5)]
            answered_during_load = not loaded.is_set()
            slow_code, slow_s = slow.result()
    assert slow_code == 200 and slow_s >= SLOW_S
    assert [code for code, _ in during] == [200] * 5
    assert answered_during_load, "the quick learner's predictions waited for the slow learner's load"
    worst, usual = max(s for _, s in during), statistics.median(baseline)
    assert worst < max(1.0, 10 * usual), f"quick predictions took up to {worst:.3f} s (usual {usual:.3f} s)"


def test_classifier_cache_loads_a_version_once_for_concurrent_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    cache = ClassifierCache(ArtifactStore(tmp_path), size=2)
    loads: list[int] = []
    broken = {2}

    def load(version: ModelVersion) -> Any:
        loads.append(version.id)
        time.sleep(0.3)  # long enough for every thread to arrive while it loads
        if version.id in broken:
            raise ArtifactCorrupt(f"version {version.number} cannot be served")
        return object()

    monkeypatch.setattr(cache, "_load", load)
    one = ModelVersion(id=1, learner_id=1, number=1)
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: cache.get(one), range(8)))
    assert loads == [1] and all(clf is got[0] for clf in got)
    assert (cache.misses, cache.hits) == (1, 7)

    two = ModelVersion(id=2, learner_id=2, number=1)
    with pytest.raises(ArtifactCorrupt):
        cache.get(two)
    broken.clear()  # the file is restored: the next request loads it, nothing failed is cached
    assert cache.get(two) is not None and loads == [1, 2, 2] and len(cache) == 2
