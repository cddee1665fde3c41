"""Re-judge every one-class task of a saved learner with today's one-class fidelity (dgm/fidelity.py).

For a checkpoint from `benchmarks.accuracy --checkpoints` (a 10x1 run), each one-class task after the
first is judged as `Learner.learn_task(reference=...)` judges it today: the run's training images of the
class, against `--reference` left-out real images of each class learned before it (what
`benchmarks.accuracy --fidelity-reference` passes, the service's holdouts), seeded by the task's seed.
(A judge's initial weights come from torch's global generator, which training has advanced by then in
a run, so this is a fresh draw of the same recipe, not the run's own judge.)
Old classes' generators are frozen, so the last version's generator draws each class as the version
that learned it did. Per class it reports:
- `fidelity`: what a version would store (samples' rate over the judge's rate on the kept fifth of the
  class's real images, capped at 1), and `real`: that rate;
- `real_test`: the judge's rate on the class's real test images (a second look at `real`);
- `samples`: the share of the class's samples the judge calls the class (fidelity before dividing);
- `earlier_heads`: per earlier class, the share of its generator samples the judge calls the new class
  (a head that drew that class would score this: a judge must keep it well below 0.8 to catch it),
  with `earlier_heads_relative_max`, the largest over the real rate (as the stored fidelity reads),
  and `earlier_real_test`: the same for those classes' real test images;
- `stored`: the fidelity the run stored (the judge of the run's code).
`--judges N` trains N judges per class (the spread of the measure, so how often the gate at 0.8 would
hold a class by chance); `--task-images N` gives each judge only the first N of the class's images
(a smaller upload's judge; the generator is the run's).

    python -m benchmarks.probe_one_class_fidelity CKPT --size 800 --out probe.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from benchmarks.machine import describe
from benchmarks.probe_one_class_judge import saved_run
from dgm import images
from dgm.data import FASHION_MNIST_DIR, select
from dgm.fidelity import SAMPLES, one_class_fidelity, one_class_judge, score
from dgm.train import generate


@torch.no_grad()
def called_new(judge: torch.nn.Module, x: torch.Tensor) -> float:
    """The share of images x that a one-class judge calls its class (output 0)."""
    return float((judge.logits(x).argmax(1) == 0).float().mean())


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.probe_one_class_fidelity", description=__doc__)
    p.add_argument("checkpoint")
    p.add_argument("--data-dir", default=str(FASHION_MNIST_DIR))
    p.add_argument("--size", type=int, required=True, help="training images per class of the run")
    p.add_argument("--reference", type=int, default=200, help="real images per earlier class")
    p.add_argument("--judges", type=int, default=1, help="judges per class (fresh draws after the first)")
    p.add_argument("--task-images", type=int, default=0, help="judge on the first N of the class's images")
    p.add_argument("--out", required=True, type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    learner, pool, (x_train, y_train), holdout = saved_run(
        args.checkpoint, args.data_dir, args.size, args.reference
    )
    cfg, gen = learner.config, learner.generator
    index = {c: i for i, c in enumerate(learner.classes)}
    tests = {
        c: images.prepare(select(pool["x_test"], pool["y_test"], [c])[0], cfg.image_shape, cpu)
        for c in learner.classes
    }
    out = {"machine": describe(), "args": {k: str(v) for k, v in vars(args).items()}, "classes": []}
    earlier: list[str] = []
    for t, report in enumerate(learner.history):
        if len(report["classes"]) != 1 or not earlier:
            earlier += report["classes"]
            continue
        (c,) = report["classes"]
        x = select(x_train, y_train, [c])[0][: args.task_images or None]
        x_test = tests[c]
        ref = (np.concatenate([holdout[e] for e in earlier]), [e for e in earlier for _ in holdout[e]])
        xt = images.prepare(x, cfg.image_shape, cpu)
        x_ref, y_ref = learner.check_reference(ref)
        for k in range(args.judges):  # judge 0 has the task's seed, as the run's; the others draw anew
            judge_seed = learner.task_seed(t) + 1_000_003 * k
            torch.manual_seed(judge_seed)  # the judge's initial weights
            fid, real = one_class_fidelity(cfg, gen, xt, index[c], x_ref, y_ref, judge_seed)
            torch.manual_seed(judge_seed)
            rng = torch.Generator().manual_seed(judge_seed)
            judge, again = one_class_judge(cfg, xt, x_ref, y_ref, rng)  # the same judge, rebuilt
            assert again == real
            (samples,) = score(judge, gen, [index[c]], rng, cfg.truncation)  # as one_class_fidelity drew
            real_test = called_new(judge, x_test)
            heads = {e: round(called_new(judge, generate(gen, [index[e]], SAMPLES, rng)), 3) for e in earlier}
            real_heads = {e: round(called_new(judge, tests[e]), 3) for e in earlier}
            row = {
                "class": c, "task": t, "judge": k, "images": len(x), "fidelity": fid, "real": real,
                "samples": samples, "real_test": round(real_test, 3),
                "stored": (report.get("fidelity") or {}).get(c), "earlier_heads": heads,
                "earlier_real_test": real_heads,
            }  # fmt: skip
            row["earlier_heads_relative_max"] = round(max(heads.values()) / real, 3) if real else None
            print(json.dumps(row), flush=True)
            out["classes"].append(row)
        earlier.append(c)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
