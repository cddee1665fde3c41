"""Open Inference Protocol v2 with the real Triton HTTP client against a live uvicorn on PostgreSQL."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient
from tritonclient.http import InferenceServerClient, InferInput, InferRequestedOutput
from tritonclient.utils import InferenceServerException

from core.settings import Settings
from service.app import create_app
from tests.service.support import TINY, auth, digits, learned, npz_bytes, wait_job

# headers=auth() each call: tritonclient adds its own entries to the dict it is given


@pytest.fixture(scope="module")
def trained(client: TestClient) -> str:
    """This module's own learner with exactly one version (digits 0 and 1): the metadata tests count its
    versions, so it must not be the session's shared learner, which the fuzzer may activate or alter."""
    return learned(client, "v2", [0, 1])


@pytest.fixture(scope="module")
def server(pg_settings: Settings, client: TestClient) -> Iterator[str]:
    """A real HTTP server (the Triton client speaks HTTP/1.1 over a socket) sharing the test database."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(pg_settings), log_level="warning", lifespan="on")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        thread.join(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    srv.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture(scope="module")
def triton(server: str) -> Iterator[InferenceServerClient]:
    c = InferenceServerClient(url=server)
    yield c
    c.close()


@pytest.fixture(scope="module")
def two_versions(client: TestClient) -> str:
    """A learner with version 1 (digits 0, 1) and version 2 (adds 2, 3), version 2 active."""
    name = f"v2-{uuid.uuid4().hex[:6]}"
    assert client.post("/v1/learners", json={**TINY, "name": name}, headers=auth()).status_code == 201
    for classes in ([0, 1], [2, 3]):
        x, y = digits(classes)
        r = client.post(
            f"/v1/learners/{name}/tasks", files={"file": ("t.npz", npz_bytes(x=x, y=y))}, headers=auth()
        )
        assert r.status_code == 202, r.text
        assert wait_job(client, r.json()["job"]["id"])["state"] == "succeeded"
    return name


def tensor(x: np.ndarray, datatype: str, binary: bool = True) -> InferInput:
    inp = InferInput("images", list(x.shape), datatype)
    inp.set_data_from_numpy(x, binary_data=binary)
    return inp


def labels(result, name: str = "label") -> list:  # noqa: ANN001 - tritonclient's InferResult
    return [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy(name).reshape(-1)]


def v1_predict(client: TestClient, name: str, x: np.ndarray, **kw) -> dict:
    r = client.post(f"/v1/learners/{name}/predict", json={"images": x.tolist(), **kw}, headers=auth())
    assert r.status_code == 200, r.text
    return r.json()


def test_v2_health_needs_no_key_and_metadata_describes_the_learner(
    triton: InferenceServerClient, trained: str
):
    assert triton.is_server_live() and triton.is_server_ready()
    assert triton.get_server_metadata()["extensions"] == ["binary_tensor_data", "classification"]
    meta = triton.get_model_metadata(trained, headers=auth())
    assert meta == {
        "name": trained,
        "versions": ["1"],
        "platform": "pytorch_dgm",
        "inputs": [{"name": "images", "datatype": "FP32", "shape": [-1, 1, 8, 8]}],
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "score", "datatype": "FP32", "shape": [-1]},
        ],
    }
    assert triton.get_model_metadata(trained, "1", headers=auth())["versions"] == ["1"]
    assert triton.is_model_ready(trained, headers=auth()) and triton.is_model_ready(
        trained, "1", headers=auth()
    )
    assert not triton.is_model_ready(trained, "2", headers=auth())
    assert not triton.is_model_ready("no-such-learner", headers=auth())
    with pytest.raises(InferenceServerException, match="missing API key") as err:
        triton.get_model_metadata(trained)
    assert err.value.status() == "401"


@pytest.mark.parametrize("binary", [True, False], ids=["binary-tensors", "json-tensors"])
def test_v2_infer_fp32_answers_like_v1(
    triton: InferenceServerClient, client: TestClient, trained: str, binary
):
    x, _ = digits([0, 1], per_class=3, offset=50)  # 6 x 8 x 8 uint8
    fp32 = (x[:, None] / 255).astype(np.float32)  # N x C x H x W in [0, 1]
    outputs = [InferRequestedOutput(n, binary_data=binary) for n in ("label", "score")]
    result = triton.infer(trained, [tensor(fp32, "FP32", binary)], outputs=outputs, headers=auth())
    v1 = v1_predict(client, trained, x)
    assert result.get_response()["model_name"] == trained
    assert result.get_response()["model_version"] == "1"
    assert labels(result) == [p["label"] for p in v1["predictions"]]
    scores = result.as_numpy("score")
    assert scores.dtype == np.float32 and scores.shape == (6,)
    np.testing.assert_allclose(scores, [p["score"] for p in v1["predictions"]], rtol=1e-5)


def test_v2_infer_uint8_in_every_layout_gives_the_same_labels(triton: InferenceServerClient, trained: str):
    x, _ = digits([0, 1], per_class=2, offset=60)  # N x H x W
    expected = labels(
        triton.infer(trained, [tensor((x[:, None] / 255).astype(np.float32), "FP32")], headers=auth())
    )
    for arr in (x, x[:, None], x[..., None]):  # [N,H,W], [N,C,H,W], [N,H,W,C]
        result = triton.infer(trained, [tensor(np.ascontiguousarray(arr), "UINT8")], headers=auth())
        assert labels(result) == expected, arr.shape


def test_v2_pinned_version_and_classification_top_k(triton: InferenceServerClient, two_versions: str):
    x, _ = digits([0, 3], per_class=2, offset=70)
    inp = [tensor(x, "UINT8")]
    assert triton.get_model_metadata(two_versions, headers=auth())["versions"] == ["1", "2"]
    active = triton.infer(
        two_versions, inp, outputs=[InferRequestedOutput("label", class_count=4)], headers=auth()
    )
    assert active.get_response()["model_version"] == "2"
    rows = active.as_numpy("label")
    assert rows.shape == (4, 4)  # Triton's classification format: "score:index:label", best first
    for row in rows:
        parts = [v.decode().split(":") for v in row]
        assert sorted(p[2] for p in parts) == ["0", "1", "2", "3"]
        assert [float(p[0]) for p in parts] == sorted((float(p[0]) for p in parts), reverse=True)
    pinned = triton.infer(two_versions, inp, model_version="1", headers=auth())
    assert pinned.get_response()["model_version"] == "1"
    assert set(labels(pinned)) <= {"0", "1"}  # version 1 knows only the first task's classes
    with pytest.raises(InferenceServerException, match="classification 4 exceeds the 2 classes"):
        triton.infer(
            two_versions,
            inp,
            model_version="1",
            outputs=[InferRequestedOutput("label", class_count=4)],
            headers=auth(),
        )


@pytest.mark.parametrize(
    ("model", "version", "x", "datatype", "status", "words"),
    [
        (None, "", np.zeros((2, 1, 8, 8), np.int32), "INT32", "400", "datatype 'INT32'; send FP32"),
        (None, "", np.zeros((2, 1, 9, 9), np.float32), "FP32", "400", "shape [2, 1, 9, 9]; this model takes"),
        (
            None,
            "",
            np.zeros((2, 3, 8, 8), np.uint8),
            "UINT8",
            "400",
            "[N, 1, 8, 8] or [N, 8, 8, 1] or [N, 8, 8]",
        ),
        (None, "", np.full((1, 1, 8, 8), 2.0, np.float32), "FP32", "400", "must lie in [0, 1]"),
        (None, "", np.full((1, 1, 8, 8), np.nan, np.float32), "FP32", "400", "NaN"),
        (
            "no-such-learner",
            "",
            np.zeros((1, 8, 8), np.uint8),
            "UINT8",
            "404",
            "no learner named 'no-such-learner'",
        ),
        (None, "7", np.zeros((1, 8, 8), np.uint8), "UINT8", "404", "has no version 7; its versions are [1]"),
        (None, "x", np.zeros((1, 8, 8), np.uint8), "UINT8", "422", "model version must be a whole number"),
    ],
    ids=[
        "datatype",
        "image-size",
        "channels",
        "range",
        "nan",
        "unknown-model",
        "unknown-version",
        "bad-version",
    ],
)
def test_v2_bad_requests_raise_with_the_servers_message(
    triton: InferenceServerClient, trained: str, model, version, x, datatype, status, words
):
    with pytest.raises(InferenceServerException) as err:
        triton.infer(model or trained, [tensor(x, datatype)], model_version=version, headers=auth())
    assert err.value.status() == status
    assert words in err.value.message()


def test_v2_plain_json_over_http(server: str, trained: str):
    """What curl sends: JSON tensors (nested data accepted), an id echoed, errors as {"error": ...}."""
    x, _ = digits([1], per_class=2, offset=80)
    url = f"http://{server}/v2/models/{trained}/infer"
    body = {
        "id": "req-1",
        "inputs": [{"name": "images", "datatype": "UINT8", "shape": [2, 8, 8], "data": x.tolist()}],
    }
    with httpx.Client(headers=auth()) as http:
        r = http.post(url, json=body)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["id"] == "req-1" and out["model_version"] == "1"
        label, score = out["outputs"]
        assert label["name"] == "label" and label["datatype"] == "BYTES" and label["shape"] == [2]
        assert score["name"] == "score" and score["datatype"] == "FP32" and 0 < min(score["data"]) <= 1
        cases = [
            (
                {**body, "inputs": [{**body["inputs"][0], "data": x.reshape(-1)[:-1].tolist()}]},
                "has 127 values but",
            ),
            ({**body, "inputs": [{**body["inputs"][0], "data": [[1, 2], [3]]}]}, "flat or nested with rows"),
            (
                {**body, "inputs": [{**body["inputs"][0], "data": (x.reshape(-1) + 0.5).tolist()}]},
                "non-integer",
            ),
            ({**body, "inputs": [{**body["inputs"][0], "name": "pixels"}]}, "unknown input 'pixels'"),
            ({**body, "inputs": []}, "exactly one input tensor"),
            ({**body, "outputs": [{"name": "logits"}]}, "unknown output 'logits'"),
            ({**body, "parameters": ["binary_data_output"]}, "parameters must be a JSON object"),
            ({**body, "inputs": [{**body["inputs"][0], "datatype": ["UINT8"]}]}, "send FP32"),
        ]
        for bad, words in cases:
            r = http.post(url, json=bad)
            assert r.status_code == 400, (words, r.text)
            assert words in r.json()["error"] and words in r.json()["detail"], r.text
        r = http.post(url, content=b"{not json")
        assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
        r = http.get(f"http://{server}/v2/models/{trained}/versions/{10**20}")
        assert r.status_code == 422 and "from 1 to 2147483647" in r.json()["error"]
        r = http.get(f"http://{server}/v2/models/%00")  # PostgreSQL cannot even be asked about a NUL byte
        assert r.status_code == 404 and "no learner named" in r.json()["error"]
