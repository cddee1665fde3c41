"""Probe how many known-class images a one-class task's fidelity judge may learn against, per task size.

A one-class task's judge (dgm.fidelity.oracle, the service's recipe) learns the task's class against real
held-out images of the classes the learner knows (worker/train.py `fidelity_reference`). Fidelity was
measured with 800 images of the class against 200 of each known class. An upload may hold as few as
`min_samples_per_class` images, and a judge that sees 8 images of its class against 200 of each of six
others calls little of anything its class: a perfect memory would then be warned about and held by the
gate. This probe stands real images in for a perfect memory: for each new class and task size n, it
trains judges with three caps on the images per known class (`cap200`: 200; `ratio4`: at most n/4, the
800-to-200 ratio that was measured; `balanced`: at most n) and reports, on real test images,
- `new_called_new`: the class's own images called the class (what a perfect memory would score; the
  gate holds below 0.8),
- `known_called_new`: known classes' images called the class (how a head that drew a known class
  would score: the judge must keep this well below 0.8 to catch it).

    python -m benchmarks.probe_reference_ratio --out benchmarks/results/probes/reference_ratio_10x1.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from pathlib import Path

import numpy as np
import torch

from benchmarks.accuracy import held_out, load_pool, subsample
from benchmarks.machine import describe
from benchmarks.probe_fidelity_judge import task_images
from dgm import LearnerConfig
from dgm.data import FASHION_MNIST_DIR
from dgm.fidelity import NOISE, oracle

KNOWN = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal"]  # the first six tasks of 10x1
CAPS = {
    "cap200": lambda n: 200,
    "ratio4": lambda n: min(200, math.ceil(n / 4)),
    "balanced": lambda n: min(200, n),
}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.probe_reference_ratio", description=__doc__)
    p.add_argument("--data-dir", default=str(FASHION_MNIST_DIR))
    p.add_argument("--classes", nargs="+", default=["shirt", "sneaker", "bag"], help="the one-class tasks")
    p.add_argument("--sizes", nargs="+", type=int, default=[8, 50, 200, 800], help="images of the class")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--caps", nargs="+", default=list(CAPS), choices=list(CAPS), help="default all")
    p.add_argument(
        "--noise", nargs="+", type=float, default=[NOISE],
        help=f"the judge's training noise sd, one judge per value (the service's one-class judge: {NOISE})",
    )  # fmt: skip
    p.add_argument("--out", required=True, type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg = LearnerConfig.preset("small", image_shape=(1, 28, 28))
    pool = load_pool(args.data_dir)
    out = {"machine": describe(), "args": {k: str(v) for k, v in vars(args).items()}, "known": KNOWN}
    out["rows"] = []
    x_known_test, _ = task_images(pool["x_test"], pool["y_test"], KNOWN, cfg.image_shape)
    for seed in args.seeds:
        x_train, y_train = subsample(pool, max(args.sizes), seed)
        holdout = held_out(pool, max(args.sizes), seed, 200)
        known = [task_images(holdout[k], np.full(len(holdout[k]), k), [k], cfg.image_shape)[0] for k in KNOWN]
        for c in args.classes:
            xc, _ = task_images(x_train, y_train, [c], cfg.image_shape)
            x_test, _ = task_images(pool["x_test"], pool["y_test"], [c], cfg.image_shape)
            for n in args.sizes:
                for name, noise in itertools.product(args.caps, args.noise):
                    k = CAPS[name](n)
                    xs = [xc[:n], *(x[:k] for x in known)]
                    ys = [torch.full((len(x),), i) for i, x in enumerate(xs)]
                    rng = torch.Generator().manual_seed(seed)
                    torch.manual_seed(seed)
                    net = oracle(cfg, torch.cat(xs), torch.cat(ys), rng, noise=noise)
                    with torch.no_grad():
                        new = float((net.logits(x_test).argmax(1) == 0).float().mean())
                        false = float((net.logits(x_known_test).argmax(1) == 0).float().mean())
                    row = {"seed": seed, "class": c, "images": n, "cap": name, "per_known_class": k,
                           "noise": noise, "new_called_new": round(new, 3),
                           "known_called_new": round(false, 3)}  # fmt: skip
                    print(json.dumps(row), flush=True)
                    out["rows"].append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
