"""Probe the classifier step offline: the same frozen generator, different ways of training the classifier.

The benchmark's oracle labels a learner's generated samples about as often as it labels real test images
of the same class correctly (fidelity relative to real, about 1.0 for every class after 10x1), yet the
served classifier, trained on those samples, stays under joint training on real test images. This probe
holds the generator fixed (a learner checkpoint from `benchmarks.accuracy --checkpoints`) and retrains
only the classifier, once per variant and repetition, scoring each on the real Fashion-MNIST test images
of every class the learner knows.

    python -m benchmarks.probe_classifier CKPT... --variants base affine --reps 2 --out probe.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.machine import describe
from dgm import Learner
from dgm.consolidate import consolidate, shift
from dgm.data import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, load_mnist_like
from dgm.networks import Discriminator

# name -> options of the classifier step (the generator is never touched): LearnerConfig overrides under
# "config", and the probe's own knobs (see `retrain`); "base" is dgm.consolidate as it ships
VARIANTS: dict[str, dict] = {
    "base": {},
    "affine": {"augment": "affine"},
    "epochs8": {"config": {"consolidate_epochs": 8}},
    "smooth": {"smoothing": 0.1},
    "noise1.3": {"noise_scale": 1.3},
    "erase": {"augment": "erase"},
    "affine_epochs8": {"augment": "affine", "config": {"consolidate_epochs": 8}},
    "adam09": {"beta1": 0.9},
    "epochs16": {"config": {"consolidate_epochs": 16}},
    "epochs8_noise1.3": {"noise_scale": 1.3, "config": {"consolidate_epochs": 8}},
    "epochs8_adam09": {"beta1": 0.9, "config": {"consolidate_epochs": 8}},
    "epochs8_per400": {"config": {"consolidate_epochs": 8, "consolidate_per_class": 400}},
    "decay": {"config": {"consolidate_lr_decay": True}},
    "decay_epochs8": {"config": {"consolidate_lr_decay": True, "consolidate_epochs": 8}},
}


def affine(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Per image: rotation within 10 degrees, scale 0.9-1.1, translation within 2 pixels (of 32)."""
    n = x.shape[0]
    u = torch.rand(n, 4, generator=rng, device=x.device) * 2 - 1
    angle, scale, shift = u[:, 0] * (10 * np.pi / 180), 1 + 0.1 * u[:, 1], u[:, 2:] * (2 / 16)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    rows = [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)]
    theta = torch.stack(rows, 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x + 1, grid, padding_mode="zeros", align_corners=False) - 1  # background is -1


def erase(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Per image: the batch shift, then an 8x8 square at a random place set to the background (-1)."""
    x = shift(x, rng).clone()
    n, _, h, w = x.shape
    at = torch.randint(0, h - 8, (n, 2), generator=rng, device=x.device)
    for i in range(n):
        x[i, :, at[i, 0] : at[i, 0] + 8, at[i, 1] : at[i, 1] + 8] = -1
    return x


def retrain(learner: Learner, options: dict, rng: torch.Generator) -> Discriminator:
    """dgm.consolidate with the probe's knobs: augment, noise_scale, smoothing, beta1."""
    cfg, gen, n = learner.config, learner.generator, len(learner.classes)
    if not set(options) - {"config"}:
        return consolidate(cfg, gen, n, rng)
    augment = {"affine": affine, "erase": erase}.get(options.get("augment", ""), shift)
    clf = Discriminator(gen.nc, cfg.ndf, n)
    opt = torch.optim.Adam(clf.parameters(), lr=cfg.lr, betas=(options.get("beta1", cfg.beta1), 0.999))
    per_class = cfg.consolidate_per_class
    labels = torch.arange(n).repeat_interleave(per_class)
    scale = options.get("noise_scale", 1.0)
    total = cfg.consolidate_epochs * -(-n * per_class // cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1 - i / total if cfg.consolidate_lr_decay else 1)
    clf.train()
    for _ in range(cfg.consolidate_epochs):
        with torch.no_grad():
            gen.eval()
            x = torch.cat([
                gen(torch.randn(per_class, gen.nz, generator=rng) * scale, torch.full((per_class,), c),
                    gen.class_task[c]).float()
                for c in range(n)
            ])  # fmt: skip
        for idx in torch.randperm(len(x), generator=rng).split(cfg.batch_size):
            logits = clf.logits(augment(x[idx], rng)).float()
            loss = F.cross_entropy(logits, labels[idx], label_smoothing=options.get("smoothing", 0.0))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return clf.eval()


def per_class_accuracy(learner: Learner, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    pred = np.asarray(learner.predict(x)[0])
    return {c: float((pred[y == c] == c).mean()) for c in learner.classes}


def probe(path: Path, variants: list[str], reps: int, x: np.ndarray, y: np.ndarray) -> dict:
    learner = Learner.load(path, device="cpu")
    keep = np.isin(y, learner.classes)
    x, y = x[keep], y[keep]
    saved = per_class_accuracy(learner, x, y)
    out = {"checkpoint": path.name, "classes": learner.classes, "saved": saved, "variants": {}}
    print(f"{path.name}: saved classifier A {np.mean(list(saved.values())):.3f}", flush=True)
    base_cfg = learner.config
    for name in variants:
        runs = []
        for rep in range(reps):
            learner.config = base_cfg.replace(**VARIANTS[name].get("config", {}))
            rng = torch.Generator().manual_seed(10_000 + rep)
            torch.manual_seed(10_000 + rep)
            started = time.perf_counter()
            learner.classifier = retrain(learner, VARIANTS[name], rng)
            acc = per_class_accuracy(learner, x, y)
            runs.append({"per_class": acc, "A": float(np.mean(list(acc.values()))),
                         "seconds": round(time.perf_counter() - started, 1)})  # fmt: skip
            worst = min(acc, key=acc.get)
            print(f"  {name} rep {rep}: A {runs[-1]['A']:.3f}, worst {worst} {acc[worst]:.2f}, "
                  f"{runs[-1]['seconds']:.0f}s", flush=True)  # fmt: skip
        out["variants"][name] = {
            "overrides": VARIANTS[name],
            "runs": runs,
            "A_mean": float(np.mean([r["A"] for r in runs])),
            "min_class_mean": float(np.mean([min(r["per_class"].values()) for r in runs])),
        }
    learner.config = base_cfg
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.probe_classifier", description=__doc__)
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--reps", type=int, default=2, help="classifier retrainings per variant (seeds)")
    p.add_argument("--data-dir", default=str(FASHION_MNIST_DIR))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_mnist_like(args.data_dir)
    x, y = data["x_test"], np.array(FASHION_MNIST_CLASSES)[data["y_test"]]
    results = {"machine": describe(), "variants": {n: VARIANTS[n] for n in args.variants}, "probes": []}
    for path in args.checkpoints:
        results["probes"].append(probe(path, args.variants, args.reps, x, y))
        args.out.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
