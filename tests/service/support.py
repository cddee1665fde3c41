"""Shared test helpers: tiny data sets, PostgreSQL schemas built by migrations, worker processes."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from PIL import Image
from sklearn.datasets import load_digits

from benchmarks.serve import PG_SERVER, pg_schema  # noqa: F401 - re-exported for the tests
from core.orm import Base
from core.settings import Settings
from core.storage import ArtifactStore

ROOT = Path(__file__).resolve().parents[2]
REDIS = "redis://127.0.0.1:6379"
ADMIN = "test-admin-key"
# auto_activate "always": a one-epoch tiny task remembers little (fidelity near 0), so the regression
# gate would hold nearly every later version; the tests of the gate (tests/service/test_gate.py) set
# their own policy, the others see each new version serve as soon as it is published.
TINY = {
    "name": "",
    "image_shape": [1, 8, 8],
    "variant": "dgmw",
    "preset": "tiny",
    "hyperparameters": {"epochs": 1},
    "auto_activate": "always",
}

_digits = load_digits()
DIGITS_X = (_digits.images / 16 * 255).astype(np.uint8)  # 1797 x 8 x 8
DIGITS_Y = _digits.target


def digits(classes: list[int], per_class: int = 24, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    idx = np.concatenate([np.where(DIGITS_Y == c)[0][offset : offset + per_class] for c in classes])
    return DIGITS_X[idx], DIGITS_Y[idx]


def npz_bytes(**arrays: Any) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


def png_zip(x: np.ndarray, y: np.ndarray, prefix: str = "digit") -> bytes:
    """A zip of class folders: digit<label>/<i>.png holding real PNG files."""
    return zip_bytes(
        {f"{prefix}{label}/{i}.png": png_bytes(img) for i, (img, label) in enumerate(zip(x, y, strict=True))}
    )


def upload(client: Any, name: str, classes: list[int], holdout: float = 0.25) -> int:
    """Upload digits of `classes` as a task (npz); returns its job id. TestClient or httpx.Client."""
    x, y = digits(classes)
    r = client.post(
        f"/v1/learners/{name}/tasks", files={"file": ("t.npz", npz_bytes(x=x, y=y))},
        data={"holdout": str(holdout)}, headers=auth(),
    )  # fmt: skip
    assert r.status_code == 202, r.text
    return r.json()["job"]["id"]


class Broker:
    """Stands in for the Celery app when a test runs a job in-process: records what the job sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, float | None]] = []

    def send_task(self, name: str, args: list, queue: str, countdown: float | None = None) -> None:
        self.sent.append((args[0], countdown))


def auth(key: str = ADMIN) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process the same settings."""
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(ROOT),
        DGM_DATA_DIR=str(settings.data_dir),
        DGM_DATABASE_URL=settings.database_url,
        DGM_BROKER_URL=settings.broker_url,
        DGM_ARTIFACT_DIR=str(settings.artifacts),
        DGM_QUEUE=settings.queue,
        DGM_TORCH_THREADS=str(settings.torch_threads),
        DGM_PROGRESS_INTERVAL_S=str(settings.progress_interval_s),
        DGM_REQUEUE_COUNTDOWN_S=str(settings.requeue_countdown_s),
        DGM_DEVICE="cpu",
    )
    return env


def start_worker(settings: Settings, log: Path) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "celery", "-A", "worker.app", "worker", "-Q", settings.queue, "--pool=solo",
        "--without-gossip", "--without-mingle", "--loglevel=INFO",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, env=settings_env(settings), cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    wait_for_text(log, "ready.", proc, timeout=60)
    return proc


def wait_for_text(log: Path, text: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"process exited early:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)
    raise TimeoutError(
        f"{text!r} not seen in {log} within {timeout}s:\n{log.read_text(errors='replace')[-3000:]}"
    )


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_job(client: Any, job_id: int, timeout: float = 120, headers: dict | None = None) -> dict:
    """Poll GET /v1/jobs/{id} until it finishes; works with TestClient and httpx.Client."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}", headers=headers or auth()).json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.25)
    raise TimeoutError(f"job {job_id} still {job['state']} after {timeout}s: {job}")


def snapshot(settings: Settings) -> tuple[dict[str, int], list[str]]:
    """Row counts of every table and the artifact files: what 'nothing stored changed' compares."""
    engine = sa.create_engine(settings.database_url, poolclass=sa.pool.NullPool)
    with engine.connect() as c:
        counts = {
            t: c.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in Base.metadata.tables
        }
    engine.dispose()
    return counts, ArtifactStore(settings.artifacts).files()


def learned(client: Any, prefix: str, *tasks: list[int]) -> str:
    """A new TINY learner that has learned each of `tasks` (digit lists), one version per task."""
    import uuid

    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    assert client.post("/v1/learners", json={**TINY, "name": name}, headers=auth()).status_code == 201
    for classes in tasks:
        x, y = digits(classes)
        r = client.post(
            f"/v1/learners/{name}/tasks", files={"file": ("t.npz", npz_bytes(x=x, y=y))}, headers=auth()
        )
        assert r.status_code == 202, r.text
        assert wait_job(client, r.json()["job"]["id"])["state"] == "succeeded"
    return name
