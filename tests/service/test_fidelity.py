"""Memory fidelity through HTTP with a real worker: versions, history, the job and the dashboard."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from service.routes.dashboard import COOKIE
from tests.service.live import train_learner
from tests.service.support import ADMIN, auth


@pytest.fixture(scope="module")
def learned(client: TestClient) -> tuple[str, list[dict]]:
    """Version 1 from digits {0, 1} (measurable), version 2 from digit {2} alone (not measurable)."""
    name = f"fid-{uuid.uuid4().hex[:6]}"
    return name, train_learner(client, name, [[0, 1], [2]])


def test_fidelity_of_every_class_is_returned_with_each_version(client: TestClient, learned):
    name, _ = learned
    v1, v2 = client.get(f"/v1/learners/{name}/versions", headers=auth()).json()
    assert set(v1["fidelity"]) == {"0", "1"}
    assert all(isinstance(f, float) and 0.0 <= f <= 1.0 for f in v1["fidelity"].values())
    # old classes carry their value forward (their generator is frozen); a one-class task is not measured
    assert v2["fidelity"] == {**v1["fidelity"], "2": None}
    history = client.get(f"/v1/learners/{name}/history", headers=auth()).json()
    assert [v["fidelity"] for v in history["versions"]] == [v1["fidelity"], v2["fidelity"]]


def test_fidelity_job_warns_about_exactly_the_low_classes_of_its_task(client: TestClient, learned):
    name, jobs = learned
    v1, v2 = client.get(f"/v1/learners/{name}/versions", headers=auth()).json()
    low = sorted(c for c, f in v1["fidelity"].items() if f < 0.8)
    first, second = (client.get(f"/v1/jobs/{j['id']}", headers=auth()).json() for j in jobs)
    assert [w.split("'")[1] for w in first["warnings"]] == low
    assert second["warnings"] == []  # class 2 is unmeasured, and 0 and 1 were not this job's classes


def test_fidelity_shows_on_the_dashboard(client: TestClient, learned):
    name, _ = learned
    v2 = client.get(f"/v1/learners/{name}/versions", headers=auth()).json()[1]
    with TestClient(client.app) as browser:  # its own cookie jar
        r = browser.post("/dashboard/login", data={"key": ADMIN, "next": f"/dashboard/{name}"})
        assert COOKIE in r.history[0].headers["set-cookie"] and r.status_code == 200
    page = r.text
    assert 'id="fidelity-2"' in page and 'id="fidelity-1"' in page
    for c in ("0", "1"):
        f = v2["fidelity"][c]
        assert f'<tr class="{"low" if f < 0.8 else ""}" data-class="{c}">' in page
        assert f"{f:.3f}" in page
    assert "n/a (one-class task)" in page
