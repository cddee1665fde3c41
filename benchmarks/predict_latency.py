"""Predict latency over HTTP against a bare forward pass of the same network, at version 1 and 10.

Starts `dgm serve` (embedded: SQLite, filesystem broker, one worker) in a temp dir, teaches one learner
ten one-class tasks (28x28 digits drawn by benchmarks.digits, preset `small`, 1 epoch each), then measures:
  - HTTP single image (JSON arrays) and batches of 64 (JSON and the raw .npy fast path): p50/p99, img/s
  - the bare forward pass (dgm.inference.Classifier.predict) on the same classifier file, same process
  - both at version 1 (1 class) and version 10 (10 classes, after expansion)
Writes benchmarks/results/predict_latency.json.  Run: `dgm bench predict` (add --quick for a smoke run).
"""

from __future__ import annotations

import argparse
import io
import json
import signal
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.digits import glyph_digits
from benchmarks.serve import embedded_env, start_serve

ROOT = Path(__file__).resolve().parent.parent
# Beside a checkout, the committed results; from an installed package, the working directory.
RESULTS = ROOT / "benchmarks" / "results" if (ROOT / "benchmarks" / "results").is_dir() else Path.cwd()
KEY = "bench-admin-key"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="dgm bench predict", description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=300, help="timed single-image requests per version")
    p.add_argument("--batches", type=int, default=60, help="timed 64-image requests per version and format")
    p.add_argument("--tasks", type=int, default=10)
    p.add_argument("--preset", default="small")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads in the server and in the bare pass (1 is the API's default; 0: torch's)",
    )
    p.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    p.add_argument("--out", type=Path)
    p.add_argument("--conditions", default="", help="what else ran on the machine, recorded in the JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.requests, args.batches, args.tasks, args.preset = 20, 5, 2, "tiny"
    return args


def percentiles(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    return {
        "p50_ms": round(statistics.median(ms), 3),
        "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "n": len(ms),
    }


def timed(fn: Callable[[], object], n: int, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def teach(client, args: argparse.Namespace, x: np.ndarray, y: np.ndarray) -> list[float]:
    """Ten one-class tasks, one after another; returns each job's training seconds."""
    body = {
        "name": "bench",
        "image_shape": [1, 28, 28],
        "preset": args.preset,
        "hyperparameters": {"epochs": 1},
    }
    client.post("/v1/learners", json=body).raise_for_status()
    seconds = []
    for c in range(args.tasks):
        buf = io.BytesIO()
        np.savez(buf, x=x[y == c], y=y[y == c])
        r = client.post("/v1/learners/bench/tasks", files={"file": ("t.npz", buf.getvalue())})
        r.raise_for_status()
        job_id = r.json()["job"]["id"]
        while (job := client.get(f"/v1/jobs/{job_id}").json())["state"] not in (
            "succeeded",
            "failed",
            "cancelled",
        ):
            time.sleep(0.5)
        if job["state"] != "succeeded":
            raise RuntimeError(f"task {c}: {job}")
        seconds.append(client.get("/v1/learners/bench/versions").json()[-1]["train_seconds"])
        print(f"  version {c + 1} trained", flush=True)
    return seconds


def measure_version(client, store: Path, version: dict, x: np.ndarray, args: argparse.Namespace) -> dict:
    from dgm.inference import Classifier

    number = version["number"]
    one, batch = x[:1], x[:64]
    npy = io.BytesIO()
    np.save(npy, batch)
    npy_body = npy.getvalue()
    single_json = {"images": one.tolist(), "version": number}
    batch_json = {"images": batch.tolist(), "version": number}
    npy_headers = {"content-type": "application/x-npy"}

    def post(**kw):
        r = client.post(f"/v1/learners/bench/predict?version={number}", **kw)
        r.raise_for_status()

    clf = Classifier.load(
        store / version["classifier_uri"], device="cpu", sha256=version["classifier_sha256"]
    )
    res = {
        "classes": len(version["classes"]),
        "parameters": version["parameters"],
        "classifier_bytes": version["classifier_bytes"],
        "http_single_json": percentiles(timed(lambda: post(json=single_json), args.requests)),
        "http_batch64_json": percentiles(timed(lambda: post(json=batch_json), args.batches)),
        "http_batch64_npy": percentiles(
            timed(lambda: post(content=npy_body, headers=npy_headers), args.batches)
        ),
        "bare_single": percentiles(timed(lambda: clf.predict(one), args.requests)),
        "bare_batch64": percentiles(timed(lambda: clf.predict(batch), args.batches)),
    }
    for key in ("http_batch64_json", "http_batch64_npy", "bare_batch64"):
        res[key]["images_per_s"] = round(64 / (res[key]["mean_ms"] / 1000), 1)
    for key in ("http_single_json", "bare_single"):
        res[key]["images_per_s"] = round(1 / (res[key]["mean_ms"] / 1000), 1)
    res["http_overhead_single_ms"] = round(
        res["http_single_json"]["p50_ms"] - res["bare_single"]["p50_ms"], 3
    )
    return res


def main(argv: list[str] | None = None) -> dict:
    import httpx
    import torch

    from benchmarks.machine import describe

    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    x, y = glyph_digits(per_class=60)  # 28x28 uint8, the shape of MNIST-like clients
    with tempfile.TemporaryDirectory(prefix="dgm-bench-") as tmp:
        data = Path(tmp)
        env = embedded_env(data, DGM_ADMIN_KEY=KEY, DGM_DEVICE="cpu", DGM_API_TORCH_THREADS=str(args.threads))
        proc, url = start_serve(data, env)
        try:
            with httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=300
            ) as client:
                train_seconds = teach(client, args, x, y)
                versions = client.get("/v1/learners/bench/versions").json()
                chosen = [versions[0], versions[-1]]
                results = {
                    str(v["number"]): measure_version(client, data / "artifacts", v, x, args) for v in chosen
                }
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    out = {
        "machine": describe(),
        "setup": {
            "transport": "HTTP/1.1 to `dgm serve` on 127.0.0.1 (uvicorn, one process), httpx keep-alive",
            "learner": {"preset": args.preset, "image_shape": [1, 28, 28], "tasks": args.tasks, "epochs": 1},
            "inference_torch_threads": args.threads or "default",
            "bare": "dgm.inference.Classifier.predict on the same classifier file, in the client process",
            "conditions": args.conditions or "nothing else running",
        },
        "train_seconds_per_task": train_seconds,
        "versions": results,
    }
    path = args.out or RESULTS / ("predict_latency_quick.json" if args.quick else "predict_latency.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"wrote {path}")
    return out


if __name__ == "__main__":
    main()
