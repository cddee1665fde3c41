"""Probe a memory-fidelity judge for one-class tasks: the task's class against earlier classes' real holdouts.

A version stores no fidelity for a one-class task: a judge trained on one class says yes to anything,
and one trained on the task's real images against generated images of earlier classes can separate real
from generated instead of class from class. The service keeps a real holdout of every task, so a
one-class task's judge could learn its class against earlier classes' real holdouts: real images on
both sides. This probe asks what such a judge would report, offline, on a saved learner (a checkpoint
from `benchmarks.accuracy --checkpoints`): for each class c, in the order learned, a judge
(dgm.fidelity.oracle, the service's recipe) is trained on the run's training images of c plus
`--holdout` real images of each class learned in an earlier task (training-pool images the run left
out, as a holdout would be), and labels 400 of the generator's samples of c. It also reports the judge's
accuracy on c's real test images, so the samples can be compared with real images (relative fidelity),
and how often it calls earlier heads' samples and earlier classes' real test images c (a judge that
calls everything c would pass any head). Each judge is trained twice: on all of the run's images of c
(what the service has), and on as many as each earlier class has (`balanced`).

    python -m benchmarks.probe_one_class_judge CKPT --size 800 --out probe.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from benchmarks.accuracy import held_out, load_pool, subsample
from benchmarks.machine import describe
from benchmarks.probe_fidelity_judge import task_images
from dgm import Learner
from dgm.data import FASHION_MNIST_DIR
from dgm.fidelity import NOISE, oracle, score
from dgm.train import generate


def saved_run(checkpoint: str, data_dir: str, size: int, n_holdout: int) -> tuple:
    """A saved learner of a benchmark run, the data pool, the run's training images (its subsample of
    `size` per class, drawn by its seed) and `n_holdout` images per class that the run left out (the
    service's kept holdout)."""
    learner = Learner.load(checkpoint, device="cpu")
    pool = load_pool(data_dir)
    seed = learner.seed
    return learner, pool, subsample(pool, size, seed), held_out(pool, size, seed, n_holdout)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.probe_one_class_judge", description=__doc__)
    p.add_argument("checkpoint")
    p.add_argument("--data-dir", default=str(FASHION_MNIST_DIR))
    p.add_argument("--size", type=int, required=True, help="training images per class of the run")
    p.add_argument("--holdout", type=int, default=200, help="real images per earlier class")
    p.add_argument("--out", required=True, type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    learner, pool, (x_train, y_train), holdout = saved_run(
        args.checkpoint, args.data_dir, args.size, args.holdout
    )
    cfg, gen = learner.config, learner.generator
    index = {c: i for i, c in enumerate(learner.classes)}
    out = {"machine": describe(), "args": {k: str(v) for k, v in vars(args).items()}, "classes": []}
    earlier: list[str] = []
    for t, report in enumerate(learner.history):
        for c in report["classes"]:
            if not earlier:
                out["classes"].append({"class": c, "task": t, "judge_classes": [c], "judges": None})
                continue
            row = {"class": c, "task": t, "judge_classes": [c, *earlier], "judges": {}}
            xc, _ = task_images(x_train, y_train, [c], cfg.image_shape)
            for name, n_c in (("task_images", len(xc)), ("balanced", args.holdout)):
                xs = [xc[:n_c]]
                for e in earlier:
                    xs.append(task_images(holdout[e], np.full(len(holdout[e]), e), [e], cfg.image_shape)[0])
                ys = [torch.full((len(x),), i) for i, x in enumerate(xs)]
                rng = torch.Generator().manual_seed(learner.task_seed(t))
                torch.manual_seed(learner.task_seed(t))
                net = oracle(cfg, torch.cat(xs), torch.cat(ys), rng, noise=NOISE)
                fid = score(net, gen, [index[c]], rng)[0]
                # the other side: earlier heads' samples and earlier classes' real test images called c
                with torch.no_grad():
                    x_test, _ = task_images(pool["x_test"], pool["y_test"], [c], cfg.image_shape)
                    real = float((net.logits(x_test).argmax(1) == 0).float().mean())
                    x_old, _ = task_images(pool["x_test"], pool["y_test"], earlier, cfg.image_shape)
                    real_false = float((net.logits(x_old).argmax(1) == 0).float().mean())
                    fake_false = float(np.mean([
                        (net.logits(generate(gen, [index[e]], 400, rng)).argmax(1) == 0).float().mean()
                        for e in earlier
                    ]))  # fmt: skip
                row["judges"][name] = {
                    "images_of_class": n_c, "fidelity": fid, "real_test_accuracy": real,
                    "relative": fid / max(real, 1e-9), "earlier_samples_called_c": fake_false,
                    "earlier_real_called_c": real_false,
                }  # fmt: skip
                print(f"  {c} (task {t}, {name}, against {len(earlier)} earlier): fidelity {fid:.3f}, real "
                      f"{real:.3f}, earlier samples called {c} {fake_false:.3f}, earlier real "
                      f"{real_false:.3f}", flush=True)  # fmt: skip
            out["classes"].append(row)
            args.out.write_text(json.dumps(out, indent=1))
        earlier += report["classes"]
    args.out.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
