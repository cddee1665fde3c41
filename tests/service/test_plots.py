"""PNG charts of a learner's history: accuracy matrix, A_t curve, capacity growth."""

from __future__ import annotations

import io
import uuid

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.charts import accuracy_matrix
from service.plots import a_t
from tests.service.live import train_learner
from tests.service.support import auth

KINDS = ("accuracy", "capacity", "at")


@pytest.fixture(scope="module")
def two_tasks(client: TestClient) -> str:
    """Digits {0,1} then {2,3}, each with a holdout: two versions and a 2 x 2 accuracy matrix."""
    name = f"plots-{uuid.uuid4().hex[:6]}"
    train_learner(client, name, [[0, 1], [2, 3]])
    return name


def png(r) -> Image.Image:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(r.content))


def test_plots_render_every_chart_as_png(client: TestClient, two_tasks: str):
    images = {k: png(client.get(f"/v1/learners/{two_tasks}/plots/{k}.png", headers=auth())) for k in KINDS}
    for kind, img in images.items():
        assert img.format == "PNG" and img.width >= 300 and img.height >= 150, kind
        assert len(img.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 8, f"{kind}.png is blank"
    assert images["capacity"].width > images["at"].width  # three panels side by side


def test_plots_accuracy_matrix_matches_history(client: TestClient, two_tasks: str):
    from service.views import get_learner, history

    with client.app.state.sessions() as s:
        m = accuracy_matrix(history(s, get_learner(s, two_tasks)))
    api = client.get(f"/v1/learners/{two_tasks}/history", headers=auth()).json()["accuracy_matrix"]
    assert m.versions == [1, 2] and m.tasks == api["tasks"] == [1, 2]
    assert m.rows == [r["accuracy"] for r in api["rows"]]
    assert m.rows[0][1] is None and None not in m.rows[1]  # v1 never saw task 2; v2 is scored on both
    assert m.task_labels == ["T1\n0,1", "T2\n2,3"]


def test_plots_a_t_is_the_mean_over_seen_tasks():
    assert a_t([[0.5, None], [0.25, 0.75], [None, None]]) == [0.5, 0.5, None]


def test_plots_any_valid_key_may_read(client: TestClient, two_tasks: str):
    made = client.post(
        "/v1/keys", json={"name": "plots-reader", "scopes": ["predict"]}, headers=auth()
    ).json()
    png(client.get(f"/v1/learners/{two_tasks}/plots/capacity.png", headers=auth(made["key"])))
    r = client.get(f"/v1/learners/{two_tasks}/plots/capacity.png")
    assert r.status_code == 401 and "Authorization" in r.json()["detail"]
    assert client.delete(f"/v1/keys/{made['id']}", headers=auth()).status_code == 200
    r = client.get(f"/v1/learners/{two_tasks}/plots/capacity.png", headers=auth(made["key"]))
    assert r.status_code == 401


def test_plots_unknown_learner_is_404_naming_it(client: TestClient):
    r = client.get("/v1/learners/no-such-learner/plots/accuracy.png", headers=auth())
    assert r.status_code == 404
    assert r.json()["error"] == "UnknownLearner" and "'no-such-learner'" in r.json()["detail"]


def test_plots_unknown_chart_is_404_listing_charts(client: TestClient, two_tasks: str):
    r = client.get(f"/v1/learners/{two_tasks}/plots/loss.png", headers=auth())
    assert r.status_code == 404 and "accuracy.png" in r.json()["detail"]


def test_plots_without_versions_is_409(client: TestClient, make_learner):
    name = make_learner()
    for kind in KINDS:
        r = client.get(f"/v1/learners/{name}/plots/{kind}.png", headers=auth())
        assert r.status_code == 409, r.text
        assert r.json()["error"] == "NotReady" and "no model versions yet" in r.json()["detail"]


def test_plots_without_holdout_accuracy_is_409_capacity_is_drawn(client: TestClient, trained: str):
    for kind in ("accuracy", "at"):
        r = client.get(f"/v1/learners/{trained}/plots/{kind}.png", headers=auth())
        assert r.status_code == 409 and "holdout" in r.json()["detail"], r.text
    png(client.get(f"/v1/learners/{trained}/plots/capacity.png", headers=auth()))
