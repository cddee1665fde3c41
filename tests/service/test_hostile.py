"""Hostile input: each case is a 4xx whose detail says what to fix, and nothing stored changes.

"Nothing stored" = row counts of every table, the artifact files, and the learner's active version.
The cases here add to test_bad_input.py: malformed multipart, lying array headers, decompression
bombs, nesting bombs, odd labels and names, pickles, absurd parameters and bodies past the limits.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from core.settings import Settings
from tests.service.support import TINY, auth, digits, npz_bytes, png_bytes, png_zip, snapshot, zip_bytes

X, Y = digits([2, 3])
FILE = "file"


def npy_header_only(shape: tuple[int, ...], descr: str = "|u1") -> bytes:
    """A .npy whose header claims `shape` but which carries almost no data."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue() + bytes(64)


def npz_with(**members: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(f"{name}.npy", data)
    return buf.getvalue()


def npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header announcing width x height pixels, with a few bytes of image data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(bytes(99)))
        + chunk(b"IEND", b"")
    )


def encrypted_zip() -> bytes:
    """A zip whose entry says it is encrypted (what `zip -e` writes); zipfile cannot read it."""
    data = bytearray(zip_bytes({f"a/{i}.png": png_bytes(X[i]) for i in range(6)}))
    for signature, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # local and central headers
        at = data.find(signature)
        while at != -1:
            data[at + flag_at] |= 0x1  # general purpose flag bit 0: encrypted
            at = data.find(signature, at + 4)
    return bytes(data)


def labelled(labels: list[str]) -> bytes:
    return npz_bytes(x=X[: len(labels)], y=np.array(labels))


def multipart(body: bytes, boundary: str = "XyZ") -> dict[str, Any]:
    return {"content": body, "headers": {"content-type": f"multipart/form-data; boundary={boundary}"}}


def upload(filename: str, data: bytes, **fields: str) -> dict[str, Any]:
    return {"files": {FILE: (filename, data)}, "data": fields or None}


half = ["a"] * 24 + ["b"] * 24
CONTROL = ["x\u202ey"] * 24 + ["b"] * 24  # right-to-left override: renders as another label
NUL = ["x\x00y"] * 24 + ["b"] * 24

# (method, path under the trained learner, request kwargs, status, words in the detail)
Case = tuple[str, str, Callable[[], dict[str, Any]], int, str]
CASES: dict[str, Case] = {
    # -- uploads: transport
    "multipart_unterminated": (
        "POST", "/tasks",
        lambda: multipart(b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="t.npz"\r\n\r\nab'),
        400, "file",
    ),
    "multipart_garbage": ("POST", "/tasks", lambda: multipart(b"\x00\xff" * 500), 400, "multipart"),
    "multipart_without_boundary": (
        "POST", "/tasks",
        lambda: {"content": b"abc", "headers": {"content-type": "multipart/form-data"}},
        400, "multipart/form-data",
    ),
    "upload_as_json": ("POST", "/tasks", lambda: {"json": {"x": [[0]], "y": [1]}}, 400, "multipart/form-data"),
    "two_files": (
        "POST", "/tasks",
        lambda: {"files": [(FILE, ("a.npz", npz_bytes(x=X, y=Y))), (FILE, ("b.npz", npz_bytes(x=X, y=Y)))]},
        400, "exactly one file",
    ),
    "empty_file": ("POST", "/tasks", lambda: upload("t.npz", b""), 400, "not a readable"),
    # -- uploads: file types and pickles
    "torch_pt_file": ("POST", "/tasks", lambda: upload("model.pt", pickle.dumps({"x": 1})), 400, "not a readable"),
    "pickle_named_npz": (
        "POST", "/tasks", lambda: upload("t.npz", pickle.dumps({"x": X, "y": Y})), 400, "not a readable",
    ),
    "pickled_member_in_npz": (
        "POST", "/tasks",
        lambda: npz_upload(x=npy(X), y=pickle.dumps(list(Y))),
        400, "t.npz",
    ),
    # -- uploads: dtypes and dimensions
    "complex_pixels": (
        "POST", "/tasks", lambda: upload("t.npz", npz_bytes(x=X.astype(np.complex64), y=Y)), 400, "complex",
    ),
    "bool_pixels": ("POST", "/tasks", lambda: upload("t.npz", npz_bytes(x=X > 0, y=Y)), 400, "bool"),
    "float_labels": (
        "POST", "/tasks", lambda: upload("t.npz", npz_bytes(x=X, y=Y.astype(np.float32) + 0.5)), 400,
        "send integers or strings",
    ),
    "npz_header_claims_huge_array": (
        "POST", "/tasks",
        lambda: npz_upload(x=npy_header_only((100_000, 100_000, 100)), y=npy(Y)),
        413, "bytes",
    ),
    "npz_header_claims_absurd_array": (
        "POST", "/tasks",
        lambda: npz_upload(x=npy_header_only((2**40, 2**40)), y=npy(Y)),
        413, "bytes",
    ),
    "png_claims_huge_size": (
        "POST", "/tasks",
        lambda: upload("t.zip", zip_bytes({f"a/{i}.png": png_claiming(60_000, 60_000) for i in range(4)})),
        400, "too large",
    ),
    "zip_in_zip": (
        "POST", "/tasks",
        lambda: upload("t.zip", zip_bytes({"a/inner.png": png_zip(X, Y)})),
        400, "not a readable PNG",
    ),
    "zip_only_hidden_entries": (
        "POST", "/tasks",
        lambda: upload("t.zip", zip_bytes({"__MACOSX/a/0.png": png_bytes(X[0]), "a/.0.png": png_bytes(X[0])})),
        400, "no images found",
    ),
    "zip_backslash_escape": (
        "POST", "/tasks",
        lambda: upload("t.zip", zip_bytes({"..\\..\\evil\\0.png": png_bytes(X[0])})),
        400, "zip",
    ),
    "zip_encrypted": ("POST", "/tasks", lambda: upload("t.zip", encrypted_zip()), 400, "encrypted"),
    "npz_encrypted": ("POST", "/tasks", lambda: upload("t.npz", encrypted_zip()), 400, "encrypted"),
    # -- uploads: labels
    "empty_label": ("POST", "/tasks", lambda: upload("t.npz", labelled([""] * 24 + ["b"] * 24)), 400, "non-empty"),
    "blank_label": ("POST", "/tasks", lambda: upload("t.npz", labelled([" "] * 24 + ["b"] * 24)), 400, "non-empty"),
    "label_10kB": (
        "POST", "/tasks", lambda: upload("t.npz", labelled(["L" * 10_000] * 24 + ["b"] * 24)), 400,
        "at most 200 characters",
    ),
    "label_control_chars": ("POST", "/tasks", lambda: upload("t.npz", labelled(CONTROL)), 400, "control"),
    "label_nul": ("POST", "/tasks", lambda: upload("t.npz", labelled(NUL)), 400, "control"),
    "holdout_nan": ("POST", "/tasks", lambda: upload("t.npz", labelled(half), holdout="nan"), 422, "holdout"),
    "holdout_huge": ("POST", "/tasks", lambda: upload("t.npz", labelled(half), holdout="1e308"), 422, "holdout"),
    # -- predict
    "top_k_negative": ("POST", "/predict", lambda: {"json": {"images": [X[0].tolist()], "top_k": -1}}, 422, "top_k"),
    "top_k_huge": (
        "POST", "/predict", lambda: {"json": {"images": [X[0].tolist()], "top_k": 10**30}}, 422, "top_k",
    ),
    "top_k_not_a_number": (
        "POST", "/predict?top_k=lots",
        lambda: {"content": npy(X[:2]), "headers": {"content-type": "application/x-npy"}},
        422, "top_k must be an integer",
    ),
    "version_negative": ("POST", "/predict", lambda: {"json": {"images": [X[0].tolist()], "version": -1}}, 404, "no version -1"),
    "json_nesting_bomb": (
        "POST", "/predict",
        lambda: {"content": b"[" * 100_000 + b"]" * 100_000, "headers": {"content-type": "application/json"}},
        400, "nested too deeply",
    ),
    "json_nesting_bomb_in_object": (
        "POST", "/predict",
        lambda: {
            "content": b'{"images": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_001,
            "headers": {"content-type": "application/json"},
        },
        400, "nested too deeply",
    ),
    "npy_header_claims_huge_batch": (
        "POST", "/predict",
        lambda: {"content": npy_header_only((10**6, 1, 8, 8)), "headers": {"content-type": "application/x-npy"}},
        413, "more than the limit",
    ),
    "npy_truncated": (
        "POST", "/predict",
        lambda: {"content": npy_header_only((100, 1, 8, 8)), "headers": {"content-type": "application/x-npy"}},
        400, "truncated or forged",
    ),
    "npy_pickled": (
        "POST", "/predict",
        lambda: {"content": pickle.dumps(X[:2]), "headers": {"content-type": "application/x-npy"}},
        400, "without pickles",
    ),
    "npy_complex": (
        "POST", "/predict",
        lambda: {"content": npy(X[:2].astype(np.complex64)), "headers": {"content-type": "application/x-npy"}},
        400, "complex",
    ),
    "npy_too_many_images": (
        "POST", "/predict",
        lambda: {"content": npy(np.zeros((2000, 8, 8), np.uint8)), "headers": {"content-type": "application/x-npy"}},
        400, "at most",
    ),
    "predict_text_as_png": (
        "POST", "/predict", lambda: {"files": {"files": ("cat.png", b"just some text")}}, 400, "not a readable",
    ),
    "predict_huge_png": (
        "POST", "/predict", lambda: {"files": {"files": ("big.png", png_claiming(60_000, 60_000))}}, 400,
        "too large",
    ),
    "predict_five_channels": (
        "POST", "/predict", lambda: {"json": {"images": [[[[0.5] * 5] * 8] * 8]}}, 400, "shape",
    ),
    # -- control routes
    "learner_name_10kB": ("POST", "/../../learners", lambda: {"json": {**TINY, "name": "n" * 10_000}}, 422, "name"),
    "learner_name_unicode": ("POST", "/../../learners", lambda: {"json": {**TINY, "name": "chat\u202e"}}, 422, "name"),
    "learner_huge_image": (
        "POST", "/../../learners", lambda: {"json": {**TINY, "name": "huge", "image_shape": [1, 100_000, 100_000]}},
        422, "height and width",
    ),
    "learner_negative_image": (
        "POST", "/../../learners", lambda: {"json": {**TINY, "name": "neg", "image_shape": [1, -8, 8]}},
        422, "height and width",
    ),
    "learner_json_bomb": (
        "POST", "/../../learners",
        lambda: {"content": b"[" * 100_000 + b"]" * 100_000, "headers": {"content-type": "application/json"}},
        400, "nested too deeply",
    ),
    "learner_body_over_limit": (
        "POST", "/../../learners",
        lambda: {"json": {**TINY, "name": "big", "hyperparameters": {"pad": "p" * (2 * 2**20)}}},
        413, "exceeds the limit",
    ),
    "key_unknown_scope": ("POST", "/../../keys", lambda: {"json": {"name": "k", "scopes": ["root"]}}, 422, "scopes"),
    "key_name_10kB": ("POST", "/../../keys", lambda: {"json": {"name": "k" * 10_000, "scopes": ["predict"]}}, 422, "name"),
    "v2_version_superscript": ("GET", "/../../../v2/models/{learner}/versions/%C2%B2", lambda: {}, 422, "whole number"),
    "v2_infer_json_bomb": (
        "POST", "/../../../v2/models/{learner}/infer",
        lambda: {"content": b"[" * 100_000 + b"]" * 100_000, "headers": {"content-type": "application/json"}},
        400, "nested too deeply",
    ),
    "job_id_not_a_number": ("GET", "/../../jobs/abc", lambda: {}, 422, "job_id"),
    "job_id_huge": ("GET", "/../../jobs/99999999999999999999", lambda: {}, 404, "no job"),
}  # fmt: skip


def npz_upload(**members: bytes) -> dict[str, Any]:
    return upload("t.npz", npz_with(**members))


def stored(client: TestClient, settings: Settings, learner: str) -> tuple[Any, ...]:
    active = client.get(f"/v1/learners/{learner}", headers=auth()).json()["active_version"]
    return (*snapshot(settings), active)


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_input_is_4xx_and_changes_nothing(
    client: TestClient, pg_settings: Settings, trained: str, case, record_property
):
    method, path, kwargs, status, words = CASES[case]
    record_property("expected_status", status)  # read from the JUnit XML by benchmarks/hostile.py
    url = f"/v1/learners/{trained}{path}"
    if "/../../../" in url:  # outside /v1
        url = "/" + url.split("/../../../", 1)[1].format(learner=trained)
    elif "/../../" in url:
        url = "/v1/" + url.split("/../../", 1)[1]
    request = kwargs()
    request["headers"] = {**auth(), **request.get("headers", {})}
    before = stored(client, pg_settings, trained)
    r = client.request(method, url, **request)
    assert r.status_code == status, (case, r.status_code, r.text[:500])
    body = r.json()
    assert set(body) == {"error", "detail"} and words in body["detail"], (case, body)
    assert stored(client, pg_settings, trained) == before


def test_hostile_case_count_is_at_least_25():
    assert len(CASES) >= 25


def test_unicode_labels_are_accepted_and_round_trip(client: TestClient, make_learner):
    """Ordinary non-ASCII class names are not hostile: they are stored and predicted as sent."""
    from tests.service.support import wait_job

    name = make_learner()
    labels = ["chat-猫"] * 24 + ["Ünïcødé ✓"] * 24
    r = client.post(f"/v1/learners/{name}/tasks", files={FILE: ("t.npz", labelled(labels))}, headers=auth())
    assert r.status_code == 202, r.text
    assert wait_job(client, r.json()["job"]["id"])["state"] == "succeeded"
    r = client.post(
        f"/v1/learners/{name}/predict", json={"images": [X[0].tolist()], "top_k": 2}, headers=auth()
    )
    assert r.status_code == 200 and set(r.json()["classes"]) == {"chat-猫", "Ünïcødé ✓"}


def test_declared_oversized_body_is_refused_before_it_is_read(pg_settings: Settings):
    """A Content-Length over the limit gets 413 at once; the app never asks for the body."""
    import asyncio

    from service.app import create_app

    app = create_app(pg_settings)
    asked: list[int] = []
    sent: list[dict] = []

    async def receive() -> dict:
        asked.append(1)
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http", "method": "POST", "path": "/v1/learners", "raw_path": b"/v1/learners",
        "query_string": b"", "root_path": "", "scheme": "http", "server": ("t", 80), "client": ("c", 1),
        "http_version": "1.1", "headers": [(b"content-length", str(10 * 2**30).encode())],
    }  # fmt: skip
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413 and not asked
    assert b"exceeds the limit" in sent[1]["body"]


def test_no_pickle_on_any_load_path():
    """No module imports pickle, calls torch.load, or lets numpy unpickle."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    offenders = []
    for path in [*root.glob("dgm/**/*.py"), *root.glob("core/**/*.py"), *root.glob("service/**/*.py"),
                 *root.glob("worker/**/*.py")]:  # fmt: skip
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                if any(n.split(".")[0] in ("pickle", "dill", "cloudpickle", "joblib") for n in names):
                    offenders.append(f"{path}:{node.lineno} imports pickle")
            if isinstance(node, ast.Attribute) and node.attr == "load" and ast.unparse(node.value) == "torch":
                offenders.append(f"{path}:{node.lineno} torch.load")
            if isinstance(node, ast.keyword) and node.arg == "allow_pickle":
                if not (isinstance(node.value, ast.Constant) and node.value.value is False):
                    offenders.append(f"{path}:{node.lineno} allow_pickle not False")
    assert not offenders, offenders
