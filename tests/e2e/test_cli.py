"""The `dgm` client commands as subprocesses against a live server on PostgreSQL with a real worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from core.settings import Settings
from tests.service.conftest import pg_settings, pg_worker  # noqa: F401 - the same PostgreSQL + worker stack
from tests.service.live import free_port, live_server
from tests.service.support import ADMIN, ROOT, digits, npz_bytes, png_bytes

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def server(pg_settings: Settings, pg_worker: None) -> Iterator[str]:  # noqa: F811
    with live_server(pg_settings) as url:
        yield url


@pytest.fixture(scope="module")
def parked(pg_settings: Settings) -> Iterator[str]:  # noqa: F811
    """A second API on the same database whose uploads go to a queue no worker reads: jobs wait."""
    import redis

    settings = pg_settings.model_copy(update={"queue": f"{pg_settings.queue}-parked"})
    with live_server(settings) as url:
        yield url
    redis.Redis.from_url(settings.broker_url).delete(settings.queue)


def dgm(
    url: str, *argv: str, key: str | None = ADMIN, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    env = dict(os.environ, DGM_URL=url, PYTHONPATH=str(ROOT))
    env.pop("DGM_ADMIN_KEY", None)
    env.pop("DGM_KEY", None)
    if key is not None:
        env["DGM_KEY"] = key
    cmd = [sys.executable, "-m", "cli", *argv]
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=180)


def ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, f"rc {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    return done.stdout


def task_file(folder: Path, name: str, classes: list[int]) -> Path:
    x, y = digits(classes)
    path = folder / name
    path.write_bytes(npz_bytes(x=x, y=y))
    return path


def test_cli_full_flow(server: str, tmp_path: Path):
    name = f"cli-{uuid.uuid4().hex[:6]}"
    create = ["learners", "create", name, "--shape", "1,8,8", "--preset", "tiny", "--set", "epochs=1"]
    out = ok(dgm(server, *create, "--auto-activate", "always"))  # not about the gate: every version serves
    assert f"created learner {name}" in out
    shown = json.loads(ok(dgm(server, "learners", "show", name, "--json")))
    assert shown["config"]["epochs"] == 1 and shown["status"] == "empty"
    assert name in [r["name"] for r in json.loads(ok(dgm(server, "learners", "list", "--json")))]

    done = dgm(
        server, "upload", name, str(task_file(tmp_path, "t1.npz", [0, 1])), "--holdout", "0.25", "--wait"
    )
    assert "succeeded" in ok(done) and "job" in done.stderr  # the progress bar is on stderr
    accepted = json.loads(
        ok(dgm(server, "upload", name, str(task_file(tmp_path, "t2.npz", [2, 3])), "--json"))
    )
    job_id = accepted["job"]["id"]
    assert accepted["task"]["classes"] == ["2", "3"]
    assert json.loads(ok(dgm(server, "jobs", "wait", str(job_id), "--json")))["state"] == "succeeded"
    assert f"job {job_id}" in ok(dgm(server, "jobs", "show", str(job_id)))
    assert json.loads(ok(dgm(server, "jobs", "show", str(job_id), "--json")))["progress"]["step"] > 0

    versions = json.loads(ok(dgm(server, "versions", "list", name, "--json")))
    assert [(v["number"], v["active"]) for v in versions] == [(1, False), (2, True)]
    assert [t["ordinal"] for t in json.loads(ok(dgm(server, "tasks", name, "--json")))] == [1, 2]

    x, _ = digits([3], per_class=2, offset=30)
    (tmp_path / "three.png").write_bytes(png_bytes(x[0]))
    pred = json.loads(ok(dgm(server, "predict", name, str(tmp_path / "three.png"), "--top-k", "2", "--json")))
    assert pred["version"] == 2 and pred["classes"] == ["0", "1", "2", "3"] and len(pred["predictions"]) == 1
    assert len(pred["predictions"][0]["top_k"]) == 2
    np.save(tmp_path / "batch.npy", x)
    text = ok(dgm(server, "predict", name, str(tmp_path / "batch.npy")))
    assert "batch.npy[1]:" in text and "version 2" in text

    history = json.loads(ok(dgm(server, "history", name, "--json")))
    assert [r["version"] for r in history["accuracy_matrix"]["rows"]] == [1, 2]
    fidelity = history["versions"][1]["fidelity"]
    assert set(fidelity) == {"0", "1", "2", "3"} and all(0 <= f <= 1 for f in fidelity.values())
    table = ok(dgm(server, "history", name))
    assert "active version 2" in table and "memory fidelity of version 2" in table
    for c, f in fidelity.items():  # one line per class, a low one flagged
        assert f"  {c:30} {f:.3f}{'  LOW: below 0.8' if f < 0.8 else ''}\n" in table

    assert "now serves version 1" in ok(dgm(server, "versions", "activate", name, "1"))
    assert json.loads(ok(dgm(server, "learners", "show", name, "--json")))["active_version"] == 1
    ok(dgm(server, "samples", name, "-o", str(tmp_path / "samples.png")))  # the active version: 1
    ok(dgm(server, "plots", name, "accuracy", "-o", str(tmp_path / "accuracy.png")))
    ok(dgm(server, "plots", name, "capacity", cwd=tmp_path))
    for png in ("samples.png", "accuracy.png", f"{name}-capacity.png"):
        assert (tmp_path / png).read_bytes()[:8] == PNG_MAGIC, png


def test_cli_keys_create_list_use_revoke(server: str, tmp_path: Path):
    name = f"cli-keys-{uuid.uuid4().hex[:6]}"
    ok(dgm(server, "learners", "create", name, "--shape", "1,8,8", "--preset", "tiny"))
    made = json.loads(ok(dgm(server, "keys", "create", "cli-reader", "--scopes", "predict", "--json")))
    assert made["key"].startswith("dgm_") and made["scopes"] == ["predict"]
    listed = {k["id"]: k for k in json.loads(ok(dgm(server, "keys", "list", "--json")))}
    assert listed[made["id"]]["revoked"] is False and "key" not in listed[made["id"]]

    assert name in ok(dgm(server, "learners", "show", name, key=made["key"]))
    denied = dgm(server, "learners", "create", f"{name}-2", "--shape", "1,8,8", key=made["key"])
    assert denied.returncode == 3 and "lacks the 'train' scope" in denied.stderr

    assert "revoked" in ok(dgm(server, "keys", "revoke", str(made["id"])))
    refused = dgm(server, "learners", "list", key=made["key"])
    assert refused.returncode == 3 and "unknown or revoked" in refused.stderr


def test_cli_job_failure_cancel_and_retry(server: str, parked: str, pg_settings: Settings, tmp_path: Path):  # noqa: F811
    from core.db import session_scope
    from core.orm import Job
    from core.storage import ArtifactStore

    name = f"cli-jobs-{uuid.uuid4().hex[:6]}"
    ok(dgm(server, "learners", "create", name, "--shape", "1,8,8", "--preset", "tiny", "--set", "epochs=1"))
    job_id = json.loads(ok(dgm(parked, "upload", name, str(task_file(tmp_path, "t.npz", [0, 1])), "--json")))[
        "job"
    ]["id"]
    assert json.loads(ok(dgm(server, "jobs", "show", str(job_id), "--json")))["state"] == "queued"
    assert "cancelled" in ok(dgm(server, "jobs", "cancel", str(job_id)))
    again = dgm(server, "jobs", "cancel", str(job_id))
    assert again.returncode == 3 and "only queued or running jobs can be cancelled" in again.stderr

    store = ArtifactStore(pg_settings.artifacts)
    with session_scope(pg_settings) as s:
        data = store.path(s.get(Job, job_id).task.data_uri)
    good = data.read_bytes()
    data.write_bytes(b"damaged")  # the worker cannot read the task: the job fails
    failed = dgm(server, "jobs", "retry", str(job_id), "--wait")
    assert failed.returncode == 1 and f"job {job_id} failed" in failed.stdout
    assert f"error: job {job_id} failed" in failed.stderr

    data.write_bytes(good)
    job = json.loads(ok(dgm(server, "jobs", "retry", str(job_id), "--wait", "--json")))
    assert job["state"] == "succeeded" and job["attempts"] >= 2
    assert json.loads(ok(dgm(server, "learners", "show", name, "--json")))["active_version"] == 1


def test_cli_exit_codes(server: str, tmp_path: Path):
    for argv in (["history", "no-such-learner"], ["learners", "show", "no-such-learner"]):
        done = dgm(server, *argv)
        assert done.returncode == 3 and "no learner named 'no-such-learner'" in done.stderr, done.stderr
        assert done.stdout == ""
    upload = dgm(server, "upload", "no-such-learner", str(task_file(tmp_path, "t.npz", [0])))
    assert upload.returncode == 3 and "UnknownLearner" in upload.stderr

    nokey = dgm(server, "learners", "list", key=None)
    assert nokey.returncode == 3 and "missing API key" in nokey.stderr
    bad_npz = tmp_path / "bad.npz"
    bad_npz.write_bytes(b"not a zip at all")
    name = f"cli-codes-{uuid.uuid4().hex[:6]}"
    ok(dgm(server, "learners", "create", name, "--shape", "1,8,8", "--preset", "tiny"))
    rejected = dgm(server, "upload", name, str(bad_npz))
    assert rejected.returncode == 3 and rejected.stderr.startswith("error: 400")

    for argv in (
        ["upload", name],  # missing FILE (argparse)
        ["predict", name, "x.png", "--top-k", "three"],
        ["learners", "create", "x", "--shape", "1,8"],
        ["upload", name, str(tmp_path / "missing.npz")],
        ["plots", name, "loss"],
    ):
        done = dgm(server, *argv)
        assert done.returncode == 2 and done.stderr, (argv, done.stderr)
    assert "channels,height,width" in dgm(server, "learners", "create", "x", "--shape", "1,8").stderr

    down = dgm(f"http://127.0.0.1:{free_port()}", "learners", "list")
    assert down.returncode == 4 and "cannot reach" in down.stderr


def test_cli_keys_scoped_to_learners_and_sessions(server: str):
    """`dgm keys create --learners`: the key lists only its learners; `dgm sessions` lists and ends a
    dashboard session; a bad scope is refused with the server's reason (exit 3)."""
    import httpx

    tag = uuid.uuid4().hex[:6]
    for name in (f"{tag}-a", f"{tag}-b"):
        ok(dgm(server, "learners", "create", name, "--shape", "1,8,8", "--preset", "tiny"))
    made = json.loads(ok(dgm(server, "keys", "create", "team", "--learners", f"{tag}-a*", "--json")))
    assert made["learners"] == [f"{tag}-a*"]
    assert f"{tag}-a*" in ok(dgm(server, "keys", "list"))
    listed = json.loads(ok(dgm(server, "learners", "list", "--json", key=made["key"])))
    assert [lr["name"] for lr in listed] == [f"{tag}-a"]
    hidden = dgm(server, "learners", "show", f"{tag}-b", key=made["key"])
    assert hidden.returncode == 3 and "no learner named" in hidden.stderr
    bad = dgm(server, "keys", "create", "bad", "--learners", "no spaces")
    assert bad.returncode == 3 and "not learner names or prefixes" in bad.stderr

    with httpx.Client(base_url=server) as browser:
        r = browser.post("/dashboard/login", data={"key": made["key"]}, follow_redirects=False)
        assert r.status_code == 303
        assert browser.get("/dashboard").status_code == 200
        sessions = json.loads(ok(dgm(server, "sessions", "list", "--json")))
        mine = [s for s in sessions if s["key_id"] == made["id"] and s["active"]]
        assert len(mine) == 1
        assert "ended" in ok(dgm(server, "sessions", "revoke", str(mine[0]["id"])))
        assert browser.get("/dashboard").status_code == 401
