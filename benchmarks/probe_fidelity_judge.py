"""Probe the service's memory-fidelity judge: do fresh judges of the same samples agree?

A version's stored fidelity comes from a small classifier (dgm.fidelity.oracle) trained on the task's
real images before they are deleted. This probe holds a learner fixed (a checkpoint from
`benchmarks.accuracy --checkpoints`), rebuilds each multi-class task of its history from the real
training images exactly as the benchmark drew them, and trains the judge `--judges` times per task
with a different initial weight draw each time, once per recipe:

- `before`: the recipe until 2026-12-06 (clean images, constant lr);
- `noise_0.3`: Gaussian noise (sd 0.3) on the training images, lr falling to 0 (2026-12-06 to 07);
- `now`: a multi-class judge's recipe today (clean images, lr falling to 0);
- `noise_0.1`, `steps_1000`, `steps_3000`, `wide`: one thing changed (RECIPES).

Each output file records what its recipe names meant when it ran (`recipes`); in files without it
(before 2026-12-07), `now` is today's `noise_0.3` and `clean` is today's `now`.

For each judge it records the fidelity of each of the task's classes and the judge's accuracy on the
real Fashion-MNIST test images of those classes. A good recipe gives the same verdict whatever the draw.

    python -m benchmarks.probe_fidelity_judge CKPT --size 2000 --seed 2 --judges 25 --out probe.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from benchmarks.accuracy import load_pool, subsample
from benchmarks.labels import add_labels_argument
from benchmarks.machine import describe
from dgm import Learner, images
from dgm.data import FASHION_MNIST_DIR, select
from dgm.fidelity import TASK_NOISE, oracle, score

# a recipe: dgm.fidelity.oracle's keyword arguments, and LearnerConfig overrides under "config"
RECIPES: dict[str, dict] = {
    "before": {"noise": 0.0, "decay": False},  # until 2026-12-06: clean images, constant lr
    "noise_0.3": {"noise": 0.3},  # a multi-class judge's from 2026-12-06 to 2026-12-07
    "now": {"noise": TASK_NOISE},  # a multi-class judge's today (dgm.fidelity.task_fidelity)
    "noise_0.1": {"noise": 0.1},
    "steps_1000": {"noise": 0.3, "config": {"fidelity_steps": 1000}},  # noise_0.3, >= 1000 steps
    "steps_3000": {"noise": 0.3, "config": {"fidelity_steps": 3000}},
    "wide": {"noise": 0.3, "width": 32},  # noise_0.3 at the critic's full base width (small), not half
}


def task_images(x, y, classes: list[str], shape) -> tuple[torch.Tensor, torch.Tensor]:
    """The images of `classes` as the judge sees them (on the CPU), labelled by index in `classes`."""
    x, y = select(x, y, classes)
    return images.prepare(x, shape, torch.device("cpu")), torch.tensor([classes.index(str(c)) for c in y])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.probe_fidelity_judge", description=__doc__)
    p.add_argument("checkpoint")
    p.add_argument("--data-dir", default=str(FASHION_MNIST_DIR))
    add_labels_argument(p, "as the run's --labels")
    p.add_argument("--size", type=int, required=True, help="training images per class of the run")
    p.add_argument("--seed", type=int, default=None, help="the run's seed (default: the checkpoint's)")
    p.add_argument("--judges", type=int, default=25, help="judges per task and recipe")
    p.add_argument("--recipes", nargs="+", default=["before", "noise_0.3", "now"], choices=list(RECIPES))
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    learner = Learner.load(args.checkpoint, device="cpu")
    if args.seed is None:
        args.seed = learner.seed
    elif args.seed != learner.seed:
        p.error(f"--seed {args.seed}, but the checkpoint's learner was built with seed {learner.seed}")
    cfg, gen = learner.config, learner.generator
    pool = load_pool(args.data_dir, args.labels)
    x_train, y_train = subsample(pool, args.size, args.seed)
    index = {c: i for i, c in enumerate(learner.classes)}
    out = {"machine": describe(), "args": dict(vars(args)), "recipes": RECIPES, "tasks": []}
    for t, report in enumerate(learner.history):
        classes = report["classes"]  # in the learner's order, which is the judge's label order
        if len(classes) < 2:
            continue  # one-class tasks have no judge
        xt, local = task_images(x_train, y_train, classes, cfg.image_shape)
        x_test, y_test = task_images(pool["x_test"], pool["y_test"], classes, cfg.image_shape)
        entry = {"task": t, "classes": classes}
        for recipe in args.recipes:
            kwargs = dict(RECIPES[recipe])
            judge_cfg = cfg.replace(**kwargs.pop("config", {}))
            fid, real, real_class = [], [], []
            for k in range(args.judges):
                torch.manual_seed(1000 + k)  # the judge's initial weights come from torch's global stream
                rng = torch.Generator().manual_seed(learner.task_seed(t))  # the judge's stream in learn_task
                net = oracle(judge_cfg, xt, local, rng, **kwargs)
                fid.append(score(net, gen, [index[c] for c in classes], rng))
                with torch.no_grad():
                    right = net.logits(x_test).argmax(1) == y_test
                real.append(float(right.float().mean()))
                real_class.append([float(right[y_test == i].float().mean()) for i in range(len(classes))])
            arr = np.array(fid)
            entry[recipe] = {
                "fidelity": {c: [round(v, 4) for v in arr[:, i]] for i, c in enumerate(classes)},
                "min_fidelity": {c: float(arr[:, i].min()) for i, c in enumerate(classes)},
                "judges_below_warning": {c: int((arr[:, i] < 0.8).sum()) for i, c in enumerate(classes)},
                "real_test_accuracy": [round(v, 4) for v in real],
                "min_real_test_accuracy": min(real),
                "real_test_accuracy_per_class": {
                    c: [round(v[i], 4) for v in real_class] for i, c in enumerate(classes)
                },
            }
            print(
                f"task {t} {classes} {recipe}: min fidelity {entry[recipe]['min_fidelity']}, judges below "
                f"0.8 {entry[recipe]['judges_below_warning']}, min real accuracy {min(real):.3f}",
                flush=True,
            )
        out["tasks"].append(entry)
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
