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
    """Version 1 from digit {2} alone (nothing to judge it against: not measured), version 2 from digits
    {0, 1}, version 3 from digit {3} alone (judged against the earlier tasks' holdouts: 75 training
    images, of which 15 measure its judge on real images)."""
    name = f"fid-{uuid.uuid4().hex[:6]}"
    hyper = {"fidelity_min_images": 50}
    return name, train_learner(client, name, [[2], [0, 1], [3]], hyperparameters=hyper, per_class=100)


def test_fidelity_of_every_class_is_returned_with_each_version(client: TestClient, learned):
    name, _ = learned
    v1, v2, v3 = client.get(f"/v1/learners/{name}/versions", headers=auth()).json()
    assert v1["fidelity"] == {"2": None}  # the first task had one class and nothing came before it
    assert set(v2["fidelity"]) == {"0", "1", "2"} and v2["fidelity"]["2"] is None
    assert all(isinstance(v2["fidelity"][c], float) and 0.0 <= v2["fidelity"][c] <= 1.0 for c in "01")
    # old classes carry their value forward (their generator is frozen); a one-class task with earlier
    # holdouts is measured
    assert v3["fidelity"] == {**v2["fidelity"], "3": v3["fidelity"]["3"]}
    assert isinstance(v3["fidelity"]["3"], float) and 0.0 <= v3["fidelity"]["3"] <= 1.0
    history = client.get(f"/v1/learners/{name}/history", headers=auth()).json()
    assert [v["fidelity"] for v in history["versions"]] == [v1["fidelity"], v2["fidelity"], v3["fidelity"]]


def test_fidelity_job_warns_about_exactly_the_low_classes_of_its_task(client: TestClient, learned):
    name, jobs = learned
    v3 = client.get(f"/v1/learners/{name}/versions", headers=auth()).json()[-1]
    first, second, third = (client.get(f"/v1/jobs/{j['id']}", headers=auth()).json() for j in jobs)
    assert first["warnings"] == []  # class 2 is unmeasured
    for job, classes in ((second, "01"), (third, "3")):  # each job names only its own classes' low values
        low = sorted(c for c in classes if v3["fidelity"][c] < 0.8)
        assert [w.split("'")[1] for w in job["warnings"]] == low


def test_fidelity_shows_on_the_dashboard(client: TestClient, learned):
    name, _ = learned
    v3 = client.get(f"/v1/learners/{name}/versions", headers=auth()).json()[-1]
    with TestClient(client.app) as browser:  # its own cookie jar
        r = browser.post("/dashboard/login", data={"key": ADMIN, "next": f"/dashboard/{name}"})
        assert COOKIE in r.history[0].headers["set-cookie"] and r.status_code == 200
    page = r.text
    assert all(f'id="fidelity-{n}"' in page for n in (1, 2, 3))
    for c in ("0", "1", "3"):
        f = v3["fidelity"][c]
        assert f'<tr class="{"low" if f < 0.8 else ""}" data-class="{c}">' in page
        assert f"{f:.3f}" in page
    assert "n/a (one-class task: not measured)" in page  # class 2
