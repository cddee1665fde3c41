"""A forget job that fails (the active version does not know the class) changes nothing, and a retry
after activating a version that knows it succeeds; run in-process on SQLite like the other job tests."""

from __future__ import annotations

from fastapi.testclient import TestClient

from core.settings import Settings
from tests.service.support import TINY, Broker, auth, snapshot, upload
from worker.train import run_job


def test_forget_job_fails_cleanly_then_retry_succeeds(client: TestClient, settings: Settings):
    assert client.post("/v1/learners", json={**TINY, "name": "fj"}, headers=auth()).status_code == 201
    for classes in ([0, 1], [2, 3]):
        assert run_job(settings, Broker(), upload(client, "fj", classes)) == "succeeded"
    r = client.delete("/v1/learners/fj/classes/2", headers=auth())
    assert r.status_code == 202, r.text
    job_id = r.json()["job"]["id"]
    assert client.post("/v1/learners/fj/versions/1/activate", headers=auth()).status_code == 200
    before = snapshot(settings)

    assert run_job(settings, Broker(), job_id) == "failed"
    job = client.get(f"/v1/jobs/{job_id}", headers=auth()).json()
    assert "the active version 1 cannot forget ['2']" in job["error"] and "Activate a version" in job["error"]
    counts, files = snapshot(settings)
    assert (counts, files) == before  # no version, no rewritten holdout, nothing half-written

    assert client.post("/v1/learners/fj/versions/2/activate", headers=auth()).status_code == 200
    r = client.post(f"/v1/jobs/{job_id}/retry", headers=auth())
    assert r.status_code in (200, 202), r.text
    assert run_job(settings, Broker(), job_id) == "succeeded"
    v3 = client.get("/v1/learners/fj/versions", headers=auth()).json()[-1]
    assert v3["classes"] == ["0", "1", "3"] and v3["removed_classes"] == ["2"] and v3["active"]
    tasks = client.get("/v1/learners/fj/tasks", headers=auth()).json()
    assert tasks[2]["state"] == "trained" and tasks[1]["n_holdout"] == 6  # the 6 of "3" stay
