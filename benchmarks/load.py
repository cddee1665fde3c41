"""Predict under load while training runs, and many learners behind one API (results/reliability.json).

The real stack on this machine: `dgm serve --no-worker` (uvicorn) on PostgreSQL, one Celery worker
process on Redis, artifacts on disk. Two phases:
- load: N concurrent predict clients for S seconds while the worker trains a second task of the same
  learner; errors, p50/p99, throughput, and the API process's RSS at start, during and at the end.
- many_learners: L learners with one task each; predict round-robin over all of them; every answer
  must carry the asking learner's own classes; the model cache stays within its bound and evicts.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from benchmarks.machine import describe
from benchmarks.reliability import update
from benchmarks.serve import pg_schema, start_serve

ROOT = Path(__file__).resolve().parent.parent
ADMIN = "load-admin-key"
REDIS = "redis://127.0.0.1:6379/12"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--learners", type=int, default=20)
    p.add_argument("--cache", type=int, default=8, help="DGM_CLASSIFIER_CACHE_SIZE of the API")
    p.add_argument(
        "--train-per-class", type=int, default=3000, help="images per class of the task trained under load"
    )
    p.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.clients, args.seconds, args.learners, args.cache, args.train_per_class = 5, 5, 3, 2, 300
    return args


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return round(kb / 1024, 1)


def npz(x: np.ndarray, y: list[str]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, x=x, y=np.array(y))
    return buf.getvalue()


def fashion() -> tuple[np.ndarray, np.ndarray]:
    from dgm.data import load_mnist_like

    d = load_mnist_like()
    return d["x_train"], d["y_train"]


def start_stack(data: Path, url: str, args: argparse.Namespace) -> tuple[list[subprocess.Popen], str, int]:
    """A worker, then `dgm serve --no-worker`, both on PostgreSQL and Redis; ready when this returns."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), DGM_DATA_DIR=str(data), DGM_DATABASE_URL=url)
    env.update(
        DGM_BROKER_URL=REDIS,
        DGM_ARTIFACT_DIR=str(data / "artifacts"),
        DGM_QUEUE=f"dgm-load-{uuid.uuid4().hex[:8]}",
    )
    env.update(DGM_ADMIN_KEY=ADMIN, DGM_DEVICE="cpu", DGM_TORCH_THREADS="1", DGM_SWEEP_INTERVAL_S="0")
    env.update(DGM_CLASSIFIER_CACHE_SIZE=str(args.cache), DGM_PROGRESS_INTERVAL_S="1")
    worker_cmd = [sys.executable, "-m", "cli", "worker", "--loglevel", "WARNING"]
    log = (data / "worker.log").open("wb")
    worker = subprocess.Popen(worker_cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    api, base = start_serve(data, env, "--no-worker")
    return [api, worker], base, api.pid


def upload(client, name: str, x: np.ndarray, labels: list[str]) -> int:
    r = client.post(f"/v1/learners/{name}/tasks", files={"file": ("t.npz", npz(x, labels))})
    r.raise_for_status()
    return r.json()["job"]["id"]


def wait(client, job_id: int, timeout: float = 3600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.5)
    raise TimeoutError(f"job {job_id} did not finish")


def hammer(base: str, name: str, images: np.ndarray, clients: int, seconds: float) -> dict:
    """`clients` threads, each a keep-alive HTTP/1.1 connection sending single-image predicts for `seconds`.

    The clients use the standard library's http.client: httpx's AsyncClient, tried first, itself raised
    a few ReadErrors (BrokenResourceError in its anyio stream) at 50 connections while the server logged
    every request as 200; with http.client the same server answers every request.
    """
    import http.client
    import threading

    host, port = base.split("//", 1)[1].split(":")
    bodies = [json.dumps({"images": [img.tolist()]}) for img in images[:64]]
    headers = {"Authorization": f"Bearer {ADMIN}", "content-type": "application/json"}
    latencies: list[float] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def loop(i: int) -> None:
        conn, n = http.client.HTTPConnection(host, int(port), timeout=120), i
        while time.monotonic() < deadline:
            t = time.perf_counter()
            try:
                conn.request(
                    "POST", f"/v1/learners/{name}/predict", body=bodies[n % len(bodies)], headers=headers
                )
                response = conn.getresponse()
                response.read()
                kind = None if response.status == 200 else str(response.status)
            except (OSError, http.client.HTTPException) as exc:
                kind = type(exc).__name__
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=120)
            with lock:
                if kind is None:
                    latencies.append(time.perf_counter() - t)
                else:
                    errors[kind] = errors.get(kind, 0) + 1
            n += clients
        conn.close()

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    ms = sorted(v * 1000 for v in latencies)
    return {
        "requests_ok": len(ms),
        "errors": errors,
        "error_count": sum(errors.values()),
        "p50_ms": round(statistics.median(ms), 2) if ms else None,
        "p99_ms": round(ms[int(0.99 * (len(ms) - 1))], 2) if ms else None,
        "max_ms": round(ms[-1], 2) if ms else None,
        "requests_per_s": round(len(ms) / seconds, 1),
    }


def phase_load(client, base: str, pid: int, args: argparse.Namespace, x: np.ndarray, y: np.ndarray) -> dict:
    name = "load"
    body = {"name": name, "image_shape": [1, 28, 28], "preset": "small", "hyperparameters": {"epochs": 2}}
    client.post("/v1/learners", json=body).raise_for_status()
    first = np.concatenate([np.where(y == c)[0][:200] for c in (0, 1)])
    assert wait(client, upload(client, name, x[first], [str(v) for v in y[first]]))["state"] == "succeeded"
    n = args.train_per_class
    second = np.concatenate([np.where(y == c)[0][:n] for c in (2, 3)])
    job_id = upload(client, name, x[second], [str(v) for v in y[second]])
    while client.get(f"/v1/jobs/{job_id}").json()["state"] != "running":
        time.sleep(0.2)
    hammer(base, name, x[first], 4, 2)  # warm-up: the model is loaded
    rss = [rss_mib(pid)]
    state_at_start = client.get(f"/v1/jobs/{job_id}").json()

    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(5):
            rss.append(rss_mib(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    result = hammer(base, name, x[first], args.clients, args.seconds)
    stop.set()
    sampler.join()
    rss.append(rss_mib(pid))
    state_at_end = client.get(f"/v1/jobs/{job_id}").json()
    finished = wait(client, job_id)
    return {
        "clients": args.clients,
        "seconds": args.seconds,
        "request": "POST /v1/learners/load/predict, one 28x28 image as JSON, active version",
        "client": "threads with http.client keep-alive connections, in one process on the same machine",
        **result,
        "api_rss_mib": {"start": rss[0], "end": rss[-1], "max": max(rss), "samples": rss},
        "training_during_window": {
            "job_state_at_start": state_at_start["state"],
            "job_state_at_end": state_at_end["state"],
            "progress_at_end": (state_at_end.get("progress") or {}).get("step"),
            "job_final_state": finished["state"],
            "images_per_class": n,
        },
    }


def phase_many(client, args: argparse.Namespace, x: np.ndarray, y: np.ndarray) -> dict:
    names, jobs, t0 = [], [], time.monotonic()
    for i in range(args.learners):
        name = f"many-{i}"
        body = {"name": name, "image_shape": [1, 28, 28], "preset": "small", "hyperparameters": {"epochs": 1}}
        client.post("/v1/learners", json=body).raise_for_status()
        classes = (i % 10, (i + 3) % 10)
        idx = np.concatenate([np.where(y == c)[0][:150] for c in classes])
        jobs.append(upload(client, name, x[idx], [f"{name}:{v}" for v in y[idx]]))
        names.append(name)
    states = [wait(client, j)["state"] for j in jobs]
    train_s = time.monotonic() - t0
    misrouted, latencies = 0, []
    for _ in range(3):
        for i, name in enumerate(names):
            t = time.perf_counter()
            r = client.post(f"/v1/learners/{name}/predict", json={"images": [x[i].tolist()]})
            latencies.append(time.perf_counter() - t)
            r.raise_for_status()
            ok = all(c.startswith(f"{name}:") for c in r.json()["classes"]) and r.json()["learner"] == name
            misrouted += not ok
    metrics = {
        line.split()[0]: float(line.split()[1])
        for line in client.get("/metrics").text.splitlines()
        if line.startswith("dgm_classifier_cache_")
    }
    ms = sorted(v * 1000 for v in latencies)
    return {
        "learners": args.learners,
        "jobs_succeeded": states.count("succeeded"),
        "train_seconds_all": round(train_s, 1),
        "predicts": len(ms),
        "misrouted": misrouted,
        "predict_p50_ms": round(statistics.median(ms), 2),
        "predict_p99_ms": round(ms[int(0.99 * (len(ms) - 1))], 2),
        "cache": metrics,
    }


def main(argv: list[str] | None = None) -> dict:
    import httpx

    args = parse(argv)
    x, y = fashion()
    with tempfile.TemporaryDirectory(prefix="dgm-load-") as tmp, pg_schema() as url:
        data = Path(tmp)
        procs, base, pid = start_stack(data, url, args)
        try:
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=300) as c:
                load = phase_load(c, base, pid, args, x, y)
                print(json.dumps(load, indent=1), flush=True)
                many = phase_many(c, args, x, y)
                print(json.dumps(many, indent=1), flush=True)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=60)
    machine = describe()
    if not args.quick:
        update("load", {**load, "machine": machine})
        update("many_learners", {**many, "machine": machine})
    return {"load": load, "many_learners": many}


if __name__ == "__main__":
    main()
