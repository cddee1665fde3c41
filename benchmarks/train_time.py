"""Seconds to train one 1600-image 28x28 task (2 Fashion-MNIST classes x 800) with the default preset.

    python -m benchmarks.train_time --threads 2     # run it alone: the figure is for a quiet machine

Issue 9's target: <= 4 minutes on 2 CPU cores. Also times one masked training step against the same
network unmasked (benchmarks.accuracy.time_masked_step), both variants, on a first and a later task. Writes
benchmarks/results/train_time.json with the machine record.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.accuracy import parse_pairs, time_masked_step
from benchmarks.machine import describe
from dgm import Learner, LearnerConfig
from dgm.data import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, load_mnist_like

RESULTS = Path(__file__).parent / "results"


def one_task(per_class: int, variant: str, overrides: dict | None = None) -> dict:
    d = load_mnist_like(FASHION_MNIST_DIR)
    rng = np.random.default_rng(0)
    idx = np.concatenate(
        [rng.choice(np.where(d["y_train"] == c)[0], per_class, replace=False) for c in (0, 1)]
    )
    x, y = d["x_train"][idx], np.array(FASHION_MNIST_CLASSES)[d["y_train"][idx]]
    cfg = LearnerConfig.preset("small", image_shape=(1, 28, 28), variant=variant, **(overrides or {}))
    learner = Learner(cfg, seed=0)
    started = time.perf_counter()
    report = learner.learn_task(x, y)
    seconds = time.perf_counter() - started
    return {
        "variant": variant,
        "overrides": overrides or {},
        "config": cfg.to_dict(),  # what benchmarks.accuracy compares with today's default
        "images": len(x),
        "seconds": round(seconds, 1),
        "losses": report.losses,
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--variants", nargs="+", default=["dgmw"])
    p.add_argument(
        "--set", nargs="+", default=[], metavar="KEY=JSON", help="time a candidate: preset overrides"
    )
    p.add_argument("--out", default=str(RESULTS / "train_time.json"))
    args = p.parse_args(argv)
    overrides = parse_pairs(args.set)
    torch.set_num_threads(args.threads)
    step_args = argparse.Namespace(preset="small", set=overrides, device=None, quick=False)
    out = {
        "machine": describe(),
        "threads": args.threads,
        "target_seconds": 240,
        "tasks": [one_task(800, v, overrides) for v in args.variants],
        # the first task, and a later one (reserved gradients blocked, DGMa's claim cap at every step)
        "masked_step": [
            time_masked_step(step_args, (1, 28, 28), v, task=t) for v in ("dgmw", "dgma") for t in (0, 1)
        ],
    }
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
