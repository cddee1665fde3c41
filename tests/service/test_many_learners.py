"""Many learners behind one API: predict routes to each learner's own model; the model cache is bounded.

The suite trains 5 learners with a cache of 2; `python -m benchmarks.load` does 20 with the default
cache size and records the figures.
"""

from __future__ import annotations

import uuid

import numpy as np
from fastapi.testclient import TestClient

from core.settings import Settings
from service.app import create_app
from tests.service.support import TINY, auth, digits, npz_bytes, wait_job

LEARNERS = 5
CACHE = 2


def test_many_learners_route_to_their_own_model_and_the_cache_evicts(
    client: TestClient, pg_settings: Settings
):
    run = uuid.uuid4().hex[:6]
    names, jobs = [], []
    for i in range(LEARNERS):
        name = f"many-{run}-{i}"
        assert client.post("/v1/learners", json={**TINY, "name": name}, headers=auth()).status_code == 201
        x, y = digits([i, i + 5])
        labels = np.array([f"{name}:{d}" for d in y])  # class names that only this learner knows
        r = client.post(
            f"/v1/learners/{name}/tasks", files={"file": ("t.npz", npz_bytes(x=x, y=labels))}, headers=auth()
        )
        assert r.status_code == 202, r.text
        names.append(name)
        jobs.append(r.json()["job"]["id"])
    for job in jobs:  # different learners: the worker takes their jobs as they come
        assert wait_job(client, job)["state"] == "succeeded"

    small = pg_settings.model_copy(update={"classifier_cache_size": CACHE})
    with TestClient(create_app(small)) as c:
        cache = c.app.state.classifiers
        for _round in range(2):
            for i, name in enumerate(names):
                x, _ = digits([i, i + 5], per_class=2, offset=30)
                r = c.post(f"/v1/learners/{name}/predict", json={"images": x.tolist()}, headers=auth())
                assert r.status_code == 200, r.text
                body = r.json()
                assert body["learner"] == name and body["version"] == 1
                assert set(body["classes"]) == {f"{name}:{i}", f"{name}:{i + 5}"}
                assert all(p["label"].startswith(f"{name}:") for p in body["predictions"])
                assert len(cache) <= CACHE
        # round-robin over 5 models with room for 2: every request loads, and all but 2 loads evict
        assert (cache.misses, cache.hits, cache.evictions) == (2 * LEARNERS, 0, 2 * LEARNERS - CACHE)
        again = c.post(f"/v1/learners/{names[-1]}/predict", json={"images": x.tolist()}, headers=auth())
        assert again.status_code == 200 and cache.hits == 1
