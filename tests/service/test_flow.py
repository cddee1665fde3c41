"""The whole flow over HTTP against PostgreSQL and a real Celery worker on Redis."""

from __future__ import annotations

import base64
import io
import time

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from core.settings import Settings
from core.storage import ArtifactStore
from dgm.data import colourise
from tests.service.support import auth, digits, npz_bytes, png_bytes, png_zip, wait_job


def upload(client: TestClient, name: str, filename: str, data: bytes, holdout: float = 0.25) -> dict:
    r = client.post(
        f"/v1/learners/{name}/tasks",
        files={"file": (filename, data)},
        data={"holdout": str(holdout)},
        headers=auth(),
    )
    assert r.status_code == 202, r.text
    return r.json()


def predict(client: TestClient, name: str, images: list, **kw) -> dict:
    r = client.post(f"/v1/learners/{name}/predict", json={"images": images, **kw}, headers=auth())
    assert r.status_code == 200, r.text
    return r.json()


def test_flow_two_tasks_predict_history_rollback(client: TestClient, make_learner, pg_settings: Settings):
    name = make_learner()
    x1, y1 = digits([0, 1], per_class=24)
    x2, y2 = digits([2, 3], per_class=24)
    first = upload(client, name, "task1.npz", npz_bytes(x=x1, y=y1))
    second = upload(client, name, "task2.zip", png_zip(x2, y2))  # queued behind the first
    assert first["urls"]["job"] == f"/v1/jobs/{first['job']['id']}"
    assert second["task"]["classes"] == ["digit2", "digit3"]
    assert (first["task"]["n_train"], first["task"]["n_holdout"]) == (36, 12)

    job1 = wait_job(client, first["job"]["id"])
    job2 = wait_job(client, second["job"]["id"])
    assert job1["state"] == job2["state"] == "succeeded", (job1, job2)
    assert job1["finished_at"] <= job2["started_at"]  # one task at a time, in upload order
    assert job2["progress"]["step"] == job2["progress"]["total"] > 0

    learner = client.get(f"/v1/learners/{name}", headers=auth()).json()
    assert learner["active_version"] == 2 and learner["status"] == "ready"
    assert learner["classes"] == ["0", "1", "digit2", "digit3"]

    x_test, _ = digits([0, 3], per_class=2, offset=100)
    out = predict(client, name, x_test.tolist(), top_k=4)
    assert out["version"] == 2 and len(out["predictions"]) == 4
    assert all(
        len(p["top_k"]) == 4 and abs(sum(s for _, s in p["top_k"]) - 1) < 1e-4 for p in out["predictions"]
    )
    b64 = base64.b64encode(png_bytes(x_test[0])).decode()
    assert predict(client, name, [b64])["predictions"][0]["label"] in learner["classes"]
    files = [("files", ("a.png", png_bytes(x_test[0]))), ("files", ("b.png", png_bytes(x_test[1])))]
    r = client.post(f"/v1/learners/{name}/predict", files=files, data={"top_k": "2"}, headers=auth())
    assert r.status_code == 200 and len(r.json()["predictions"]) == 2, r.text

    history = client.get(f"/v1/learners/{name}/history", headers=auth()).json()
    assert [t["state"] for t in history["tasks"]] == ["trained", "trained"]
    assert [v["number"] for v in history["versions"]] == [1, 2]
    v1, v2 = history["versions"]
    assert v2["trained_from"] == 1 and v1["trained_from"] is None
    assert history["accuracy_matrix"]["tasks"] == [1, 2]
    row1, row2 = history["accuracy_matrix"]["rows"]
    assert row1["accuracy"][1] is None and row1["accuracy"][0] is not None
    assert all(0 <= a <= 1 for a in row2["accuracy"])
    assert (
        len(v2["checkpoint_sha256"]) == 64
        and v2["parameters"] > 0
        and set(v2["mask_usage"]) == set(v2["widths"])
    )
    assert history["expansions"][0]["units_added"] == v1["units_added"]

    # training data deleted once trained, holdout kept, checkpoints verified
    store = ArtifactStore(pg_settings.artifacts)
    kept = store.files()
    assert not [f for f in kept if f.endswith("train.npz") and name in f]
    assert all(not t["training_data_kept"] for t in history["tasks"])
    store.verify(v2["checkpoint_uri"], v2["checkpoint_sha256"])
    store.verify(v2["classifier_uri"], v2["classifier_sha256"])

    png = client.get(f"/v1/learners/{name}/versions/2/samples.png", headers=auth())
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"

    # roll back: version 1 serves again with its two classes
    r = client.post(f"/v1/learners/{name}/versions/1/activate", headers=auth())
    assert r.status_code == 200 and r.json()["active"] is True
    out = predict(client, name, x_test.tolist(), top_k=2)
    assert out["version"] == 1 and out["classes"] == ["0", "1"]
    assert {p["label"] for p in out["predictions"]} <= {"0", "1"}
    assert predict(client, name, x_test.tolist(), version=2)["version"] == 2  # explicit version still works

    # new tasks continue from the active version: v3 is trained from v1 and knows 0, 1, 4
    x4, y4 = digits([4], per_class=24)
    third = upload(client, name, "task3.npz", npz_bytes(x=x4, y=y4), holdout=0)
    assert wait_job(client, third["job"]["id"])["state"] == "succeeded"
    versions = client.get(f"/v1/learners/{name}/versions", headers=auth()).json()
    assert versions[-1]["number"] == 3 and versions[-1]["trained_from"] == 1
    assert versions[-1]["classes"] == ["0", "1", "4"] and versions[-1]["active"]


def wait_state(client: TestClient, job_id: int, state: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}", headers=auth()).json()
        if job["state"] == state:
            return job
        time.sleep(0.1)
    raise TimeoutError(f"job {job_id} never reached {state}: {job}")


def test_flow_cancel_running_and_queued_jobs_then_retry(client: TestClient, make_learner):
    name = make_learner(hyperparameters={"epochs": 60})  # long enough to still be running
    x1, y1 = digits([5, 6])
    x2, y2 = digits([7, 8])
    first = upload(client, name, "a.npz", npz_bytes(x=x1, y=y1), holdout=0)
    second = upload(client, name, "b.npz", npz_bytes(x=x2, y=y2), holdout=0)
    r = client.post(f"/v1/jobs/{second['job']['id']}/cancel", headers=auth())
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    running = wait_state(client, first["job"]["id"], "running")
    assert running["started_at"] is not None
    r = client.post(f"/v1/jobs/{first['job']['id']}/cancel", headers=auth())
    assert r.status_code == 200 and r.json()["cancel_requested"] is True
    cancelled = wait_job(client, first["job"]["id"])
    assert cancelled["state"] == "cancelled", cancelled
    assert client.post(f"/v1/jobs/{first['job']['id']}/cancel", headers=auth()).status_code == 409
    assert client.get(f"/v1/learners/{name}", headers=auth()).json()["active_version"] is None

    r = client.post(f"/v1/jobs/{second['job']['id']}/retry", headers=auth())
    assert r.status_code == 200 and r.json()["state"] == "queued"
    # the retried task (7, 8) is the only unfinished one, so it trains now
    assert wait_job(client, second["job"]["id"], timeout=300)["state"] == "succeeded"
    learner = client.get(f"/v1/learners/{name}", headers=auth()).json()
    assert learner["classes"] == ["7", "8"] and learner["active_version"] == 1


def test_flow_simultaneous_uploads_get_consecutive_ordinals_and_one_class_check(
    client: TestClient, make_learner
):
    from concurrent.futures import ThreadPoolExecutor

    name = make_learner()
    x, y = digits([5, 6], per_class=24)
    xa, ya = digits([7], per_class=24)
    bodies = [npz_bytes(x=x, y=y), npz_bytes(x=x, y=y), npz_bytes(x=xa, y=ya)]

    def post(data: bytes):
        return client.post(f"/v1/learners/{name}/tasks", files={"file": ("t.npz", data)}, headers=auth())

    with ThreadPoolExecutor(3) as pool:
        responses = list(pool.map(post, bodies))
    codes = sorted(r.status_code for r in responses)
    assert codes == [202, 202, 400], [r.text for r in responses]
    refused = next(r for r in responses if r.status_code == 400).json()
    assert "['5', '6']" in refused["detail"] and "already in task #" in refused["detail"]
    tasks = client.get(f"/v1/learners/{name}/tasks", headers=auth()).json()
    assert sorted(t["ordinal"] for t in tasks) == [1, 2]
    assert sorted(c for t in tasks for c in t["classes"]) == ["5", "6", "7"]
    for r in responses:
        if r.status_code == 202:
            assert wait_job(client, r.json()["job"]["id"])["state"] == "succeeded"


def same_predictions(a: list[dict], b: list[dict]) -> bool:
    """The same label and top-k labels for every image, the scores equal to 1e-5."""
    return len(a) == len(b) and all(
        p["label"] == q["label"]
        and [k for k, _ in p.get("top_k", [])] == [k for k, _ in q.get("top_k", [])]
        and np.allclose([v for _, v in p.get("top_k", [])], [v for _, v in q.get("top_k", [])], atol=1e-5)
        and abs(p["score"] - q["score"]) <= 1e-5
        for p, q in zip(a, b, strict=True)
    )


def test_flow_colour_learner_trains_on_rgb_pngs_and_predicts_every_colour_layout(
    client: TestClient, make_learner
):
    """A 3-channel learner end to end: a zip of RGB PNG class folders, then an npz in N x C x H x W;
    predict takes RGB arrays in both layouts, RGB PNGs (multipart and base64); samples are colour."""
    name = make_learner(image_shape=[3, 8, 8])
    x1, y1 = digits([0, 1], per_class=24)
    x2, y2 = digits([2, 3], per_class=24)
    rgb1, rgb2 = colourise(x1, 0), colourise(x2, 1)  # N x 8 x 8 x 3
    first = upload(client, name, "task1.zip", png_zip(rgb1, y1))
    second = upload(client, name, "task2.npz", npz_bytes(x=rgb2.transpose(0, 3, 1, 2), y=y2))
    for job in (first, second):
        done = wait_job(client, job["job"]["id"])
        assert done["state"] == "succeeded", done

    learner = client.get(f"/v1/learners/{name}", headers=auth()).json()
    assert learner["image_shape"] == [3, 8, 8] and learner["classes"] == ["digit0", "digit1", "2", "3"]
    x_test, _ = digits([0, 3], per_class=2, offset=100)
    rgb_test = colourise(x_test, 2)
    hwc = predict(client, name, rgb_test.tolist(), top_k=4)
    chw = predict(client, name, rgb_test.transpose(0, 3, 1, 2).tolist(), top_k=4)
    # one image, either layout: the same labels and ranking; the scores agree to float rounding (the two
    # layouts reach the network through different memory orders, which may sum in another order)
    assert hwc["version"] == 2 and same_predictions(hwc["predictions"], chw["predictions"])
    b64 = base64.b64encode(png_bytes(rgb_test[0])).decode()
    assert predict(client, name, [b64])["predictions"][0]["label"] == hwc["predictions"][0]["label"]
    files = [("files", (f"{i}.png", png_bytes(img))) for i, img in enumerate(rgb_test)]
    r = client.post(f"/v1/learners/{name}/predict", files=files, headers=auth())
    assert r.status_code == 200, r.text
    assert [p["label"] for p in r.json()["predictions"]] == [p["label"] for p in hwc["predictions"]]

    tensor = {"name": "images", "datatype": "UINT8", "shape": [4, 8, 8, 3], "data": rgb_test.ravel().tolist()}
    r = client.post(f"/v2/models/{name}/infer", json={"inputs": [tensor]}, headers=auth())
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == [p["label"] for p in hwc["predictions"]]  # v2 agrees with v1
    meta = client.get(f"/v2/models/{name}", headers=auth()).json()
    assert meta["inputs"][0]["shape"] == [-1, 3, 8, 8]

    grey = predict(client, name, x_test.tolist())  # grey arrays are read as grey PNGs are: R = G = B
    as_rgb = predict(client, name, np.repeat(x_test[..., None], 3, axis=-1).tolist())
    assert same_predictions(grey["predictions"], as_rgb["predictions"])

    history = client.get(f"/v1/learners/{name}/history", headers=auth()).json()
    assert set(history["versions"][-1]["fidelity"]) == {"2", "3", "digit0", "digit1"}
    png = client.get(f"/v1/learners/{name}/versions/2/samples.png", headers=auth())
    assert png.status_code == 200
    grid = np.asarray(Image.open(io.BytesIO(png.content)).convert("RGB")).astype(int)
    tiles = grid[:, 96:]  # past the label column: the samples themselves
    assert np.abs(tiles[..., 0] - tiles[..., 1]).max() > 0  # colour, not grey copied thrice
