"""`dgm serve` supervises its embedded worker: killed, it comes back, and a task uploaded meanwhile trains.

A real `dgm serve` (SQLite, filesystem broker, worker subprocess) with a 0.5 s heartbeat, a 3 s liveness
window and a 6 s first restart delay, so the time with no live worker is long enough to be seen.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.e2e.test_embedded import free_port
from tests.service.support import ADMIN, ROOT, TINY, auth, digits, npz_bytes, wait_job


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def wait_for(check, timeout: float, what: str):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"waited {timeout} s for {what}")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def test_supervision_killed_worker_restarts_and_a_task_uploaded_meanwhile_trains(tmp_path):
    port, log_path = free_port(), tmp_path / "serve.log"
    env = dict(os.environ, PYTHONPATH=str(ROOT), DGM_DATA_DIR=str(tmp_path / "var"), DGM_ADMIN_KEY=ADMIN)
    env.update(
        DGM_TORCH_THREADS="1", DGM_DEVICE="cpu", DGM_PROGRESS_INTERVAL_S="0.2", DGM_REQUEUE_COUNTDOWN_S="0.5",
        DGM_HEARTBEAT_S="0.5", DGM_WORKER_ALIVE_S="3", DGM_WORKER_RESTART_S="6",
    )  # fmt: skip
    for key in ("DGM_DATABASE_URL", "DGM_BROKER_URL", "DGM_ARTIFACT_DIR", "DGM_QUEUE"):
        env.pop(key, None)
    serve = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--port", str(port)], env=env, cwd=tmp_path,
        stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def ready() -> dict | None:
        try:
            r = httpx.get(f"{url}/readyz", timeout=2)
        except httpx.HTTPError:
            return None
        return r.json() if r.status_code == 200 else None

    try:
        wait_for(lambda: (ready() or {}).get("workers_alive") == 1, 90, "the embedded worker's heartbeat")
        (first,) = children(serve.pid)
        with httpx.Client(base_url=url, headers=auth(), timeout=60) as c:
            assert c.post("/v1/learners", json={**TINY, "name": "sup"}).status_code == 201
            os.kill(first, signal.SIGKILL)

            gone = wait_for(lambda: (r := ready()) and r["workers_alive"] == 0 and r, 10, "alive to drop")
            assert gone["ready"] is True and gone["training"].startswith("no live worker since ")
            x, y = digits([0, 1])
            up = c.post("/v1/learners/sup/tasks", files={"file": ("a.npz", npz_bytes(x=x, y=y))})
            assert up.status_code == 202, up.text
            job_id = up.json()["job"]["id"]
            waiting = c.get(f"/v1/jobs/{job_id}").json()
            assert waiting["state"] == "queued"
            assert waiting["state_detail"].startswith("waiting: no live worker since "), waiting

            back = wait_for(lambda: (ready() or {}).get("workers_alive") == 1, 90, "the restarted worker")
            assert back
            (second,) = children(serve.pid)
            assert second != first
            done = wait_job(c, job_id)
            assert done["state"] == "succeeded" and done["attempts"] == 1, done
            assert done["worker"].split(":")[1] == str(second) and done["state_detail"] is None
            metrics = c.get("/metrics").text
            assert "\ndgm_workers_alive 1.0\n" in metrics
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=40)
    log = log_path.read_text(errors="replace")
    assert f"embedded worker (pid {first}) was killed by signal SIGKILL" in log, log[-3000:]
    assert "restarting it in 6.0 s (restart 1)" in log
    assert not alive(second)  # stopping `dgm serve` stopped its worker too
