"""Probe the memory's latent truncation offline: one saved learner, its samples drawn at several truncations.

For each truncation t (LearnerConfig.truncation; 0 = untruncated N(0, 1), the default) this reports
- fidelity: the benchmark's oracle (benchmarks.accuracy.Oracle, the same classifier and seed as the run
  that saved the checkpoint) labels 400 generated samples of every class;
- accuracy: the serving classifier retrained (dgm.consolidate, `reps` classifier seeds) on replay drawn
  at t, scored per class on the real Fashion-MNIST test images of every class the learner knows.
The generator is never touched, and DGMw's old classes are drawn from frozen masks, so the retrained
classifier at t is what the last version would serve had its consolidation drawn at t. (Replay during
training, which shapes the critic and so the newer heads, is not reproduced: that needs a full run.)

    python -m benchmarks.probe_truncation CKPT --seed 0 --truncations 0 1 0.5 --out probe.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.accuracy import Oracle, load_pool
from benchmarks.machine import describe
from benchmarks.probe_classifier import per_class_accuracy
from core.images import render_grid
from dgm import Learner
from dgm.consolidate import consolidate
from dgm.data import FASHION_MNIST_DIR


def probe(path: Path, oracle: Oracle, pool: dict, seed: int, truncations, reps: int, grids: Path | None):
    learner = Learner.load(path, device="cpu")
    keep = np.isin(pool["y_test"], learner.classes)
    x, y = pool["x_test"][keep], pool["y_test"][keep]
    old = [c for c in learner.classes if c not in learner.history[-1]["classes"]]
    base = learner.config
    out = {"checkpoint": path.name, "classes": learner.classes, "saved": per_class_accuracy(learner, x, y)}
    out["oracle_class_test_accuracy"] = oracle.record["class_test_accuracy"]
    out["truncations"] = {}
    for t in truncations:
        learner.config = base.replace(truncation=t)
        started = time.perf_counter()
        fid = oracle.fidelity(learner, seed)
        runs = []
        for rep in range(reps):
            rng = torch.Generator().manual_seed(10_000 + rep)
            torch.manual_seed(10_000 + rep)
            learner.classifier = consolidate(learner.config, learner.generator, len(learner.classes), rng)
            acc = per_class_accuracy(learner, x, y)
            runs.append({
                "per_class": acc, "A": float(np.mean(list(acc.values()))),
                "min_old_class": min(acc[c] for c in old) if old else None,
            })  # fmt: skip
        if grids is not None:
            grid = render_grid({c: learner.sample(c, n=16, seed=0) for c in learner.classes})
            (grids / f"{path.stem}_trunc{t:g}.png").write_bytes(grid)
        worst = min(fid, key=fid.get)
        out["truncations"][str(t)] = {
            "fidelity": fid,
            "min_fidelity": fid[worst],
            "runs": runs,
            "A_mean": float(np.mean([r["A"] for r in runs])),
            "min_old_class_mean": float(np.mean([r["min_old_class"] for r in runs])) if old else None,
            "seconds": round(time.perf_counter() - started, 1),
        }
        row = out["truncations"][str(t)]
        print(f"  {path.name} t={t:g}: min fidelity {worst} {fid[worst]:.3f}, A {row['A_mean']:.3f}, "
              f"worst old {row['min_old_class_mean']}, {row['seconds']:.0f}s", flush=True)  # fmt: skip
    learner.config = base
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.probe_truncation", description=__doc__)
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--seed", type=int, required=True, help="the benchmark seed the checkpoints ran with")
    p.add_argument("--truncations", nargs="+", type=float, default=[0.0, 1.5, 1.0, 0.75, 0.5])
    p.add_argument("--reps", type=int, default=1, help="classifier retrainings per truncation (seeds)")
    p.add_argument("--data-dir", default=str(FASHION_MNIST_DIR))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--grids", type=Path, default=None, help="write each truncation's sample grid here")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    bench = argparse.Namespace(quick=False, data_dir=args.data_dir, preset="small", set={}, device=None)
    pool = load_pool(args.data_dir)
    oracle = Oracle(bench, pool, args.seed, (1, *pool["x_train"].shape[1:3]))
    if args.grids is not None:
        args.grids.mkdir(parents=True, exist_ok=True)
    results = {"machine": describe(), "seed": args.seed, "oracle": oracle.record, "probes": []}
    for path in args.checkpoints:
        row = probe(path, oracle, pool, args.seed, args.truncations, args.reps, args.grids)
        results["probes"].append(row)
        args.out.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
