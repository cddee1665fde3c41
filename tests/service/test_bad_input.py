"""Each bad input is a 4xx that names the problem, and nothing stored changes (rows and files)."""

from __future__ import annotations

import asyncio
import io
import stat
import zipfile

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from core.orm import Task
from core.settings import Settings
from tests.service.conftest import MAX_UNPACKED, MAX_UPLOAD
from tests.service.support import auth, digits, npz_bytes, png_bytes, png_zip, snapshot, zip_bytes

X, Y = digits([2, 3])


def symlink_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        info = zipfile.ZipInfo("digit2/link.png")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        z.writestr(info, "/etc/passwd")
        z.writestr("digit2/0.png", png_bytes(X[0]))
    return buf.getvalue()


def object_npz() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, x=X, y=np.array([{"label": 1}] * len(X), dtype=object))
    return buf.getvalue()


def nan_npz() -> bytes:
    x = X.astype(np.float32) / 255
    x[3, 2, 2] = np.nan
    return npz_bytes(x=x, y=Y)


UPLOADS = {
    "wrong_image_shape": ("t.npz", npz_bytes(x=np.zeros((48, 10, 10), np.uint8), y=Y), 400, "image shape"),
    "wrong_png_size": (
        "t.zip",
        png_zip(np.zeros((8, 12, 12), np.uint8), np.repeat([2, 3], 4)),
        400,
        "expects 8x8",
    ),
    "too_few_samples": ("t.npz", npz_bytes(x=X[:6], y=np.array([2, 2, 2, 3, 3, 3])), 400, "at least"),
    "nan_pixels": ("t.npz", nan_npz(), 400, "NaN"),
    "out_of_range": ("t.npz", npz_bytes(x=X.astype(np.float32), y=Y), 400, "[0, 1]"),
    "object_arrays": ("t.npz", object_npz(), 400, "object arrays"),
    "missing_y": ("t.npz", npz_bytes(x=X), 400, "missing array"),
    "label_count": ("t.npz", npz_bytes(x=X, y=Y[:-1]), 400, "one label per image"),
    "corrupt_npz": ("t.npz", b"PK\x03\x04 this is not really a zip file at all", 400, "not a readable"),
    "corrupt_zip": ("t.zip", png_zip(X, Y)[:-200], 400, "not a readable"),
    "corrupt_image": (
        "t.zip",
        zip_bytes({"a/0.png": b"\x89PNG garbage", "a/1.png": b"x"}),
        400,
        "not a readable PNG",
    ),
    "zip_dotdot": ("t.zip", zip_bytes({"../evil/0.png": png_bytes(X[0])}), 400, "outside the archive root"),
    "zip_absolute": (
        "t.zip",
        zip_bytes({"/etc/evil/0.png": png_bytes(X[0])}),
        400,
        "outside the archive root",
    ),
    "zip_symlink": ("t.zip", symlink_zip(), 400, "symbolic link"),
    "zip_not_class_folders": ("t.zip", zip_bytes({"0.png": png_bytes(X[0])}), 400, "class_name/image"),
    "zip_bomb": ("t.zip", zip_bytes({"a/big.png": bytes(MAX_UNPACKED + 1)}), 413, "unpacks to"),
    "oversized": ("t.npz", bytes(MAX_UPLOAD + 200_000), 413, "exceeds the limit"),
}


@pytest.mark.parametrize("case", list(UPLOADS))
def test_upload_bad_input_is_4xx_and_stores_nothing(
    client: TestClient, pg_settings: Settings, make_learner, case
):
    name = make_learner()
    filename, data, status, words = UPLOADS[case]
    before = snapshot(pg_settings)
    r = client.post(f"/v1/learners/{name}/tasks", files={"file": (filename, data)}, headers=auth())
    assert r.status_code == status, r.text
    assert words in r.json()["detail"], r.json()
    assert set(r.json()) == {"error", "detail"}
    assert snapshot(pg_settings) == before


def test_upload_unknown_learner_is_404(client: TestClient, pg_settings: Settings):
    before = snapshot(pg_settings)
    r = client.post(
        "/v1/learners/nobody/tasks", files={"file": ("t.npz", npz_bytes(x=X, y=Y))}, headers=auth()
    )
    assert r.status_code == 404 and r.json()["error"] == "UnknownLearner"
    assert snapshot(pg_settings) == before


def test_upload_labels_already_learned_is_400(client: TestClient, pg_settings: Settings, trained: str):
    x, y = digits([1, 5])
    before = snapshot(pg_settings)
    r = client.post(
        f"/v1/learners/{trained}/tasks", files={"file": ("t.npz", npz_bytes(x=x, y=y))}, headers=auth()
    )
    assert r.status_code == 400 and "already learned" in r.json()["detail"] and "'1'" in r.json()["detail"]
    assert snapshot(pg_settings) == before


def test_upload_labels_pending_in_earlier_task_is_400(
    client: TestClient, pg_settings: Settings, make_learner
):
    name = make_learner()
    learner_id = client.get(f"/v1/learners/{name}", headers=auth()).json()["id"]
    engine = create_engine(pg_settings.database_url)
    with engine.begin() as c:  # an earlier upload still waiting in the queue
        c.execute(
            Task.__table__.insert().values(
                learner_id=learner_id, ordinal=1, state="queued", classes=["2"], class_counts={"2": 24},
                n_train=24, n_holdout=0, source="earlier.npz", data_uri=None, holdout_uri=None,
            )
        )  # fmt: skip
    engine.dispose()
    before = snapshot(pg_settings)
    r = client.post(
        f"/v1/learners/{name}/tasks", files={"file": ("t.npz", npz_bytes(x=X, y=Y))}, headers=auth()
    )
    assert r.status_code == 400 and "already in task #1" in r.json()["detail"]
    assert snapshot(pg_settings) == before


@pytest.mark.parametrize("holdout", ["0.9", "-0.1", "lots"])
def test_upload_bad_holdout_is_422(client: TestClient, pg_settings: Settings, make_learner, holdout):
    name = make_learner()
    before = snapshot(pg_settings)
    r = client.post(
        f"/v1/learners/{name}/tasks",
        files={"file": ("t.npz", npz_bytes(x=X, y=Y))},
        data={"holdout": holdout},
        headers=auth(),
    )
    assert r.status_code == 422 and "holdout" in r.json()["detail"]
    assert snapshot(pg_settings) == before


PREDICTS = {
    "top_k_zero": ({"images": [X[0].tolist()], "top_k": 0}, 422, "top_k must be in 1..2"),
    "top_k_too_big": ({"images": [X[0].tolist()], "top_k": 3}, 422, "top_k must be in 1..2"),
    "unknown_version": ({"images": [X[0].tolist()], "version": 99}, 404, "no version 99"),
    "nan_pixels": ({"images": [[[float("nan")] * 8] * 8]}, 400, None),
    "bad_base64": ({"images": ["not-base64!!"]}, 400, "base64"),
    "not_an_image": ({"images": ["aGVsbG8="]}, 400, "not a readable PNG"),
    "ragged": ({"images": [[[1, 2], [3]]]}, 400, "ragged"),
    "no_images": ({"images": []}, 422, "images"),
}


@pytest.mark.parametrize("case", list(PREDICTS))
def test_predict_bad_input_is_4xx(client: TestClient, trained: str, case):
    body, status, words = PREDICTS[case]
    if case == "nan_pixels":  # JSON has no NaN; send it the way numpy clients do
        r = client.post(
            f"/v1/learners/{trained}/predict",
            content=b'{"images": [[[NaN, 0.5], [0.5, 0.5]]]}',
            headers={**auth(), "content-type": "application/json"},
        )
        words = "NaN"
    else:
        r = client.post(f"/v1/learners/{trained}/predict", json=body, headers=auth())
    assert r.status_code == status, r.text
    assert words in r.json()["detail"], r.json()


def test_predict_body_that_is_not_utf8_is_400(client: TestClient, trained: str):
    """Bytes that are no text at all (schemathesis found a 500 here): a 400 that says the body is not JSON."""
    r = client.post(
        f"/v1/learners/{trained}/predict?version=1",
        content=b"\xff\x6c\xfe\x40\x2d\xfd",
        headers={**auth(), "content-type": "application/json"},
    )
    assert r.status_code == 400, r.text
    assert "not valid JSON" in r.json()["detail"]


def test_predict_unknown_learner_and_untrained_learner(client: TestClient, make_learner):
    r = client.post("/v1/learners/nobody/predict", json={"images": [X[0].tolist()]}, headers=auth())
    assert r.status_code == 404 and r.json()["error"] == "UnknownLearner"
    r = client.post(
        f"/v1/learners/{make_learner()}/predict", json={"images": [X[0].tolist()]}, headers=auth()
    )
    assert r.status_code == 409 and "no model version yet" in r.json()["detail"]


def test_predict_resizes_other_image_sizes(client: TestClient, trained: str):
    big = np.kron(X[0], np.ones((4, 4), np.uint8))  # 32 x 32
    r = client.post(f"/v1/learners/{trained}/predict", json={"images": [big.tolist()]}, headers=auth())
    assert r.status_code == 200 and r.json()["predictions"][0]["label"] in ("0", "1")


def test_predict_npy_fast_path(client: TestClient, trained: str):
    buf = io.BytesIO()
    np.save(buf, X[:5])
    r = client.post(
        f"/v1/learners/{trained}/predict?top_k=2", content=buf.getvalue(),
        headers={**auth(), "content-type": "application/x-npy"},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 5 and len(r.json()["predictions"][0]["top_k"]) == 2


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"hyperparameters": {"nosuch": 1}}, "unknown hyper-parameter"),
        ({"hyperparameters": {"epochs": 0}}, "epochs must be >= 1"),
        ({"image_shape": [2, 8, 8]}, "channels must be 1 or 3"),
        ({"variant": "dgmx"}, "variant"),
        ({"name": "bad name!"}, "name"),
    ],
)
def test_create_learner_bad_config_is_422(client: TestClient, pg_settings: Settings, body, words):
    from tests.service.support import TINY

    before = snapshot(pg_settings)
    r = client.post("/v1/learners", json={**TINY, "name": "fine", **body}, headers=auth())
    assert r.status_code == 422 and words in r.json()["detail"], r.text
    assert snapshot(pg_settings) == before


def test_create_learner_twice_is_409(client: TestClient, make_learner):
    from tests.service.support import TINY

    name = make_learner()
    r = client.post("/v1/learners", json={**TINY, "name": name}, headers=auth())
    assert r.status_code == 409 and r.json()["error"] == "LearnerExists"


def test_activate_unknown_version_is_404(client: TestClient, trained: str):
    r = client.post(f"/v1/learners/{trained}/versions/42/activate", headers=auth())
    assert r.status_code == 404 and "no version 42" in r.json()["detail"]


def test_damaged_classifier_file_is_a_clear_error(client: TestClient, pg_settings: Settings, make_learner):
    from core.storage import ArtifactStore
    from tests.service.support import wait_job

    name = make_learner()
    r = client.post(
        f"/v1/learners/{name}/tasks", files={"file": ("t.npz", npz_bytes(x=X, y=Y))}, headers=auth()
    )
    assert wait_job(client, r.json()["job"]["id"])["state"] == "succeeded"
    version = client.get(f"/v1/learners/{name}/versions", headers=auth()).json()[0]
    path = ArtifactStore(pg_settings.artifacts).path(version["classifier_uri"])
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    r = client.post(f"/v1/learners/{name}/predict", json={"images": [X[0].tolist()]}, headers=auth())
    assert r.status_code == 503 and r.json()["error"] == "ArtifactCorrupt" and "sha256" in r.json()["detail"]


def test_upload_oversized_stream_is_refused_before_it_is_read(tmp_path):
    """No Content-Length (chunked): the limit is enforced per chunk, long before the body ends.

    (TestClient buffers whole bodies, so this drives the ASGI receive channel directly.)
    """
    from starlette.requests import Request

    from core.errors import PayloadTooLarge
    from service.uploads import receive_form

    received = 0
    head = b'--BOUND\r\nContent-Disposition: form-data; name="file"; filename="big.npz"\r\n\r\n'

    async def receive() -> dict:
        nonlocal received
        received += 1
        body = head if received == 1 else bytes(256 * 1024)
        return {"type": "http.request", "body": body, "more_body": received < 65}  # 16 MiB in all

    scope = {
        "type": "http", "method": "POST", "path": "/", "query_string": b"",
        "headers": [(b"content-type", b"multipart/form-data; boundary=BOUND")],
    }  # fmt: skip

    async def run() -> None:
        with pytest.raises(PayloadTooLarge, match="exceeds the limit"):
            await receive_form(Request(scope, receive), MAX_UPLOAD, tmp_path)

    asyncio.run(run())
    assert received < 12  # 2 MiB limit + overhead: about 9 chunks of 256 KiB, not 65
    assert sum(f.stat().st_size for f in tmp_path.iterdir()) <= MAX_UPLOAD + 256 * 1024


def test_library_input_error_is_400_through_the_one_handler(pg_settings: Settings):
    """A DGMInputError that reaches the service (the library refusing data the service let through)
    answers 400 in the service's shape, from the app's handler, never a 500."""
    from dgm import DGMInputError
    from service.app import create_app

    app = create_app(pg_settings)

    @app.get("/library-refuses")
    def library_refuses() -> None:
        raise DGMInputError("images have shape (3,); this learner expects N x 8 x 8")

    r = TestClient(app).get("/library-refuses")
    assert r.status_code == 400, r.text
    assert r.json() == {
        "error": "InvalidInput",
        "detail": "images have shape (3,); this learner expects N x 8 x 8",
    }
