"""Recovery at the DEFAULT settings: a worker SIGKILLed mid-training, seconds until its job is redelivered.

Nothing is shortened for the measurement: lease 30 s (renewed while the job trains), the API's sweeper
every 10 s, heartbeat 5 s, the embedded worker restarted after 1 s. Two stacks, each a real API process
and real worker processes:
- embedded: `dgm serve` (SQLite, filesystem broker, the supervised embedded worker). The kill takes the
  only worker; `dgm serve` restarts it, and the sweeper re-sends the job once its lease ran out.
- distributed: `dgm serve --no-worker` and one `dgm worker` per kill plus one, on PostgreSQL and Redis.
  The kill takes the worker training the job; Redis keeps the dead worker's delivery unacknowledged
  (visibility timeout 6 h), so again the sweeper re-sends the job once its lease ran out, and another
  worker takes it.

Redelivery is the moment the job's `attempts` becomes 2 (a worker claimed it again), polled through
GET /v1/jobs/{id} every 0.2 s. Expected: the lease left at the kill (up to 30 s; it was renewed within the
last second) plus the wait for the next sweep (up to 10 s), so at most about 40 s.

Run: `python -m benchmarks.recovery [--trials 3] [--stacks embedded,distributed]`; writes the key
"recovery_defaults" of benchmarks/results/reliability.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.digits import glyph_digits
from benchmarks.machine import describe
from benchmarks.reliability import update
from benchmarks.serve import ROOT, embedded_env, pg_schema, start_serve

ADMIN = "bench-admin-key"
REDIS = "redis://127.0.0.1:6379/13"
KEY = "recovery_defaults"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.recovery", description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=3, help="kills per stack")
    p.add_argument("--stacks", default="embedded,distributed")
    p.add_argument("--epochs", type=int, default=150, help="long enough for the kill to land mid-training")
    p.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/reliability.json")
    return p.parse_args(argv)


def until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"waited {timeout} s for {what}")


def task_file(classes: list[int]) -> bytes:
    x, y = glyph_digits(per_class=24, size=8)
    keep = np.isin(y, classes)
    buf = io.BytesIO()
    np.savez(buf, x=x[keep], y=y[keep])
    return buf.getvalue()


@contextmanager
def embedded(folder: Path, _count: int) -> Iterator[tuple[str, str]]:
    """`dgm serve` at its defaults; yields its URL and the stack's name."""
    env = embedded_env(folder / "var", DGM_ADMIN_KEY=ADMIN, DGM_DEVICE="cpu", DGM_TORCH_THREADS="1")
    proc, url = start_serve(folder, env)
    try:
        yield url, "embedded: dgm serve (SQLite, filesystem broker, supervised worker)"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


@contextmanager
def distributed(folder: Path, count: int) -> Iterator[tuple[str, str]]:
    """`dgm serve --no-worker` and `count` `dgm worker` on PostgreSQL and Redis, at the defaults."""
    with pg_schema() as db:
        env = embedded_env(folder, DGM_ADMIN_KEY=ADMIN, DGM_DEVICE="cpu", DGM_TORCH_THREADS="1")
        env.update(
            DGM_DATABASE_URL=db, DGM_BROKER_URL=REDIS, DGM_QUEUE=f"dgm-recovery-{uuid.uuid4().hex[:8]}"
        )
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "cli", "worker"],
                env=env,
                cwd=ROOT,
                stdout=(folder / f"worker{i}.log").open("wb"),
                stderr=subprocess.STDOUT,
            )  # fmt: skip
            for i in range(count)
        ]
        api, url = start_serve(folder, env, "--no-worker")
        try:
            until(lambda: httpx.get(f"{url}/readyz").json()["workers_alive"] == count, 180, "the workers")
            yield url, f"distributed: dgm serve --no-worker + {count} dgm worker (PostgreSQL, Redis)"
        finally:
            for proc in (api, *workers):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in (api, *workers):
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()


def when(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def trial(c: httpx.Client, url: str, epochs: int) -> dict[str, Any]:
    """One learner, one task; SIGKILL its worker mid-training; time redelivery and completion."""
    name = f"rec-{uuid.uuid4().hex[:6]}"
    body = {"name": name, "image_shape": [1, 8, 8], "preset": "tiny", "hyperparameters": {"epochs": epochs}}
    c.post("/v1/learners", json=body).raise_for_status()
    until(lambda: httpx.get(f"{url}/readyz").json()["workers_alive"] >= 1, 180, "a live worker")
    up = c.post(f"/v1/learners/{name}/tasks", files={"file": ("t.npz", task_file([0, 1]))})
    up.raise_for_status()
    job_id = up.json()["job"]["id"]

    def training() -> dict | None:
        job = c.get(f"/v1/jobs/{job_id}").json()
        assert job["state"] in ("queued", "running"), job
        return job if job["state"] == "running" and (job["progress"] or {}).get("step", 0) > 0 else None

    job = until(training, 300, "the job to be training")
    pid = int(job["worker"].split(":")[1])
    os.kill(pid, signal.SIGKILL)
    killed, killed_wall = time.monotonic(), time.time()
    detail = c.get(f"/v1/jobs/{job_id}").json()["state_detail"] or ""  # "running on W (lease until T)"
    until_text = detail.partition("lease until ")[2].rstrip(")")
    lease_left = when(until_text) - killed_wall if until_text[:1].isdigit() else None
    again = until(lambda: (j := c.get(f"/v1/jobs/{job_id}").json())["attempts"] >= 2 and j, 300, "redelivery")
    redelivered = time.monotonic()
    done = until(lambda: (j := c.get(f"/v1/jobs/{job_id}").json())["state"] in ("succeeded", "failed") and j,
                 900, "the job to finish")  # fmt: skip
    return {
        "killed_pid": pid,
        "killed_at_step": f"{job['progress']['step']}/{job['progress']['total']}",
        "lease_left_at_kill_s": None if lease_left is None else round(lease_left, 1),
        "kill_to_redelivery_s": round(redelivered - killed, 2),
        "kill_to_completion_s": round(time.monotonic() - killed, 2),
        "redelivered_to": again["worker"].split(":")[1],
        "state": done["state"],
        "attempts": done["attempts"],
    }


def summary(trials: list[dict[str, Any]]) -> dict[str, float]:
    r = [t["kill_to_redelivery_s"] for t in trials]
    return {"min_s": min(r), "median_s": round(statistics.median(r), 2), "max_s": max(r)}


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run the stacks' cleanup on `kill`
    from core.settings import Settings

    names = ("lease_s", "sweep_interval_s", "heartbeat_s", "worker_alive_s", "worker_restart_s",
             "progress_interval_s", "visibility_timeout_s")  # fmt: skip
    settings = {n: Settings.model_fields[n].default for n in names}  # the defaults, whatever this env says
    stacks = {"embedded": embedded, "distributed": distributed}
    out: dict[str, Any] = {
        "what": __doc__.split("\n\n")[0].replace("\n", " "),
        "command": "python -m benchmarks.recovery " + " ".join(argv or sys.argv[1:]),
        "settings": settings,
        "conditions": f"tiny learner, 8x8 glyph digits, 2 classes x 24 images, {args.epochs} epochs; worker "
        "torch threads 1; SIGKILL once the job reports progress; machine shared with other runs",
    }
    for which in args.stacks.split(","):
        with tempfile.TemporaryDirectory(prefix=f"dgm-recovery-{which}-") as folder:
            with stacks[which](Path(folder), args.trials + 1) as (url, label):
                with httpx.Client(
                    base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60
                ) as c:
                    trials = [trial(c, url, args.epochs) for _ in range(args.trials)]
        out[which] = {"stack": label, "trials": trials, "kill_to_redelivery": summary(trials)}
        print(json.dumps({which: out[which]["kill_to_redelivery"]}), flush=True)
        out["machine"] = describe()
        update(KEY, out, **({"path": args.out} if args.out else {}))  # after each stack: nothing is lost
    return out


if __name__ == "__main__":
    main()
