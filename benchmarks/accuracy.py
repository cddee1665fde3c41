"""Class-incremental accuracy of DGMw and DGMa against joint training and fine-tuning, with an ablation.

Everything goes through `dgm.Learner`, the class the service trains, with the preset's defaults.

    python -m benchmarks.accuracy                               # everything below (hours on a CPU)
    python -m benchmarks.accuracy --protocols 5x2 --sizes 800 --seeds 0 --out a.json   # one chunk
    python -m benchmarks.accuracy --ablation --out ablation.json   # DGMw with each lever off, one at a time
    python -m benchmarks.accuracy --levers own_code_rows --lever-variant dgma --out a.json   # a DGMa lever
    python -m benchmarks.accuracy --merge a.json b.json ablation.json --out benchmarks/results/accuracy.json
    dgm bench accuracy --quick                                  # seconds: Pillow-drawn digits, `tiny` preset

Fashion-MNIST 5x2 and 10x1 (2x5, two tasks of five classes, on request), at every size of --sizes
(training images per class, a different class subsample per seed) and every seed of --seeds (also the
learner's seed). Per run: task and per-class accuracy after every task, A_t, final A, the worst old
class after the last task, average forgetting, seconds per task, generator and total parameters per
version, the learner's own per-class fidelity, and an independent fidelity: an oracle trained once per
seed on every real training image of all classes labels 400 generated samples of each class after the
last task. The JSON (written after every run; --resume skips runs already in it) holds the raw runs, a
flat `summary` (one row per protocol x size x method, means over seeds), the issue-9 `targets` with
pass/fail, and a masked-vs-unmasked training-step timing; the A_t curves and a per-class heatmap of DGMw
go to PNGs beside it.
`python -m benchmarks.report accuracy|ablation FILE` renders the README tables from it.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.labels import add_labels_argument
from benchmarks.machine import describe
from core.gate import among
from core.images import SAMPLES_PER_CLASS, render_grid
from dgm import DGMInputError, Learner, LearnerConfig
from dgm.baselines import PlainClassifier
from dgm.config import INERT
from dgm.data import (
    CLASS_NAMES,
    DIGIT_WORDS,
    FASHION_MNIST_DIR,
    class_incremental,
    colourise_sets,
    load_mnist_like,
    select,
)
from dgm.train import TaskTrainer, budget

ROOT = Path(__file__).resolve().parent.parent
# Beside a checkout, the committed results; from an installed package, the working directory.
RESULTS = ROOT / "benchmarks" / "results" if (ROOT / "benchmarks" / "results").is_dir() else Path.cwd()

METHODS = ("dgmw", "dgma", "joint", "finetune")
PROTOCOLS = {"5x2": 2, "10x1": 1, "2x5": 5}  # name -> classes per task (2x5: two tasks of five)
# The ablation: DGMw (--lever-variant dgma: DGMa) with one lever of issue 9 turned off or on (LearnerConfig
# overrides), one run per lever; a lever with `variants` runs only on those. Edit freely; `--levers
# NAME...` runs a subset, `--lever NAME key=json...` adds one from the command line.
LEVERS: dict[str, dict[str, Any]] = {
    "no_projection": {
        "overrides": {"projection": False, "aux_g": True},
        "description": "no conditional critic: unconditional critic with aux CE, as before",
    },
    "critic_head": {
        "overrides": {"classifier": "critic_head"},
        "description": "classifier = critic's head trained beside the critic on real + fixed replay, "
        "as the official code",
    },
    "consolidate_real": {
        "overrides": {"consolidate_real": True},
        "description": "real current-task images added to consolidation",
    },
    "no_step_floor": {
        "overrides": {"steps": 0, "steps_per_class": 0, "epochs": 5},
        "description": "no step floor: 5 epochs over the upload, the previous small preset's budget",
    },
    "no_steps_per_class": {
        "overrides": {"steps_per_class": 0},
        "description": "no per-class step floor: a task of five classes trains the 1000 steps a task of two "
        "gets (the default until 2026-12-07)",
    },
    "short_consolidation": {
        "overrides": {"consolidate_epochs": 4, "consolidate_lr_decay": False},
        "description": "the classifier consolidated 4 epochs at a constant lr (the default until 2026-11-26)",
    },
    "no_surplus_carry": {
        "overrides": {"carry_surplus": False},
        "description": "DGMw's whole-channel rounding surplus not carried to later claims, so free capacity "
        "drifts up (METHOD.md as written; the default until 2026-11-26)",
    },
    "g_ema": {
        "overrides": {"g_ema": 0.995},
        "description": "the generator a task leaves behind averaged over its last ~200 steps (g_ema 0.995)",
    },
    "gan_lr_decay": {
        "overrides": {"gan_lr_decay": True},
        "description": "the critic's and the generator's lr (not the mask embedding's) fall linearly to 0 "
        "over each task's steps, the same steps",
    },
    "critic_batch_std": {
        "overrides": {"critic_batch_std": True},
        "description": "the critic also scores each class's feature deviation over the batch (ProGAN's "
        "minibatch standard deviation, per class), a reward for variety within a class",
    },
    "default_same_machine": {
        "overrides": {},
        "description": "the dgmw default of 2026-11-26 (base width 8) rerun on the machine of the g_ema "
        "runs (fifth session), so the pair by seed shares a machine",
    },
    "ngf8": {
        "overrides": {"ngf": 8},
        "description": "generator base width 8 (channels 32, 16, 8 before growth), the default until "
        "2026-12-05",
    },
    "zero_mask_start": {
        "overrides": {"reuse_start": 0.0},
        "description": "new tasks' mask embeddings start at 0 (official), not favouring reserved weights",
    },
    "own_code_rows": {
        "overrides": {"own_code_rows": True},
        # DGMw reserves per weight, and a first task leaves the rows of codes not yet used free (only the
        # sparsity term reaches them): the lever changes nothing there unless a forgotten class's code is
        # reused, which the benchmark never does
        "variants": ("dgma",),
        "description": "conv1's rows fed by a new task's own one-hot codes train even where an earlier task "
        "reserved them (no finished task reads them), so a new class gets a learned input to each conv1 unit",
    },
    "aux_g": {
        "overrides": {"aux_g": True},
        "description": "the generator's loss also takes cross-entropy through the critic's class head, "
        "trained on the real batch plus replay in t+1 chunks a step (METHOD.md 4 (a); official: ImageNet "
        "only), on top of the projection critic",
    },
    "aux_g_one_chunk": {
        "overrides": {"aux_g": True, "classify_chunks": 1},
        "description": "aux_g with one class-head step per iteration on a shuffled chunk of real + replay, "
        "so the step costs the same at every task",
    },
    "aux_g_one_chunk_x3": {
        "overrides": {"aux_g": True, "classify_chunks": 1, "lam_aux": 3.0},
        "description": "aux_g_one_chunk with the aux cross-entropy weighted 3 in the generator's loss, "
        "to push each class's samples further from the other classes'",
    },
}
ORACLE_EPOCHS = 3  # the benchmark's oracle: passes over every real training image of every class
ORACLE_MIN_STEPS = 300  # ... and at least this many batches (the quick data set is small)
# --quick's LearnerConfig overrides on the tiny preset (--set's come after): a smoke run, not a measurement
QUICK_SET = {"steps": 40, "consolidate_epochs": 2, "fidelity_epochs": 0}
FIDELITY_SAMPLES = 400  # generated images per class that the oracle labels
SHUFFLED_ORDER = "a random order per seed (numpy default_rng(seed).permutation)"  # --shuffle-classes
# settings that must agree for runs to be resumed into, or merged with, the same results
COMPATIBLE = ("quick", "preset", "set", "data", "max_tasks", "labels")
# the lever whose runs are today's default with --fidelity-reference: a one-class protocol's rows have no
# service fidelity without it, so its targets read these runs' (evaluate_targets)
ONE_CLASS_MEASURED = "one_class_relative"
TARGETS = {
    "dgmw_vs_joint": 0.85,
    "min_old_class_acc_5x2": 0.5,
    "min_fidelity": 0.9,
    "generator_growth_10_tasks": 2.0,
    "seconds_1600_image_task": 240.0,
    "masked_step_ratio": 1.25,
}


# ----- data ------------------------------------------------------------------------------------
def load_pool(
    data_dir: str | Path, labels: str = "fashion", quick_per_class: int = 0, colour: bool = False
) -> dict[str, Any]:
    """Every training and test image with string labels (the names CLASS_NAMES[labels] gives the IDX
    classes 0-9), and the class order of the task splits. quick_per_class > 0: --quick's Pillow-drawn
    digits instead, that many training images per class (data_dir unread). colour: every image tinted
    to N x H x W x 3 by dgm.data.colourise_sets (the same pixels for every run and seed)."""
    if quick_per_class:
        from benchmarks.digits import glyph_digits

        (x_train, y_train), (x_test, y_test) = (
            glyph_digits(per_class=quick_per_class, seed=0),
            glyph_digits(per_class=30, seed=1),
        )
        data = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
        names = np.array(DIGIT_WORDS)
    else:
        data = load_mnist_like(data_dir)
        names = np.array(CLASS_NAMES[labels])  # labels whose sorted order is not the class order
    if colour:
        data = colourise_sets(data)
    return {
        "x_train": data["x_train"], "y_train": names[data["y_train"]],
        "x_test": data["x_test"], "y_test": names[data["y_test"]], "classes": list(names),
    }  # fmt: skip


def subsample_indices(pool: dict, per_class: int, seed: int) -> np.ndarray:
    """Indices into the pool's training images of per_class images of each class, a draw per seed."""
    rng = np.random.default_rng(seed)
    keep = []
    for c in pool["classes"]:
        idx = np.where(pool["y_train"] == c)[0]
        if len(idx) < per_class:
            raise SystemExit(f"class {c!r} has {len(idx)} training images, fewer than {per_class}")
        keep.append(rng.choice(idx, per_class, replace=False))
    return np.sort(np.concatenate(keep))


def subsample(pool: dict, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """per_class training images of each class (0: all), a different draw per seed."""
    if not per_class:
        return pool["x_train"], pool["y_train"]
    keep = subsample_indices(pool, per_class, seed)
    return pool["x_train"][keep], pool["y_train"][keep]


def held_out(pool: dict, per_class: int, seed: int, n: int) -> dict[str, np.ndarray]:
    """n training-pool images of each class that the run's subsample left out: what the service would
    keep as a task's holdout, for a one-class task's fidelity reference (--fidelity-reference)."""
    if not per_class:
        raise SystemExit("--fidelity-reference needs images left out of training: not with --sizes 0")
    used = subsample_indices(pool, per_class, seed)
    rng = np.random.default_rng(20_000 + seed)
    out = {}
    for c in pool["classes"]:
        idx = np.setdiff1d(np.where(pool["y_train"] == c)[0], used)
        out[c] = pool["x_train"][rng.choice(idx, min(n, len(idx)), replace=False)]
    return out


def parse_pairs(pairs: list[str]) -> dict[str, Any]:
    """["name=json", ...] -> {name: value}; a value that is not JSON is taken as a string."""
    out = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"expected name=json, got {pair!r}")
        try:
            out[name] = json.loads(raw)
        except json.JSONDecodeError:
            out[name] = raw
    return out


def dgm_config(args, variant: str, shape, overrides: dict | None = None) -> LearnerConfig:
    return LearnerConfig.preset(
        args.preset, image_shape=shape, variant=variant, **{**args.set, **(overrides or {})}
    )


# ----- evaluation ------------------------------------------------------------------------------
def evaluate(predict, pool: dict, tasks: list[list[str]], upto: int) -> tuple[list[float], list]:
    """After task `upto`: accuracy on each task's real test images, and on each class's (None: unseen)."""
    seen = [c for task in tasks[: upto + 1] for c in task]
    keep = np.isin(pool["y_test"], seen)
    y = pool["y_test"][keep]
    right = np.asarray(predict(pool["x_test"][keep])) == y
    per_task = [float(right[np.isin(y, task)].mean()) for task in tasks[: upto + 1]]
    order = [c for task in tasks for c in task]
    per_class = [float(right[y == c].mean()) if c in seen else None for c in order]
    return per_task, per_class


def gate_evidence(scores, classes: list[str], pool: dict, tasks: list[list[str]], t: int) -> dict:
    """After task t >= 1, on each earlier task's real test images: the new version's accuracy when it
    may answer only the previous version's classes ("known"), and the share of them it answers with one
    of task t's classes ("to_new"). With row t - 1 of the accuracy matrix, the regression gate's
    evidence (core/gate.py) as the service would see it on these images. `scores(x)`: N x K softmax
    scores in the order of `classes`."""
    known = {c for task in tasks[:t] for c in task}
    keep = np.isin(pool["y_test"], sorted(known))
    y, probs = pool["y_test"][keep], np.asarray(scores(pool["x_test"][keep]))
    per_task = [
        among(list(y[np.isin(y, task)]), probs[np.isin(y, task)], classes, known) for task in tasks[:t]
    ]
    return {"known": [acc for acc, _ in per_task], "to_new": [share for _, share in per_task]}


def run_metrics(matrix: list[list[float]], class_matrix: list[list], tasks: list[list[str]]) -> dict:
    a_t = [float(np.mean(row)) for row in matrix]
    last = matrix[-1]
    forgetting = [
        max(matrix[t][j] for t in range(j, len(matrix) - 1)) - last[j] for j in range(len(last) - 1)
    ]
    order = [c for task in tasks for c in task]
    old = [a for c, a in zip(order, class_matrix[-1], strict=True) if a is not None and c not in tasks[-1]]
    return {
        "accuracy_matrix": matrix,
        "class_accuracy_matrix": class_matrix,
        "A_t": a_t,
        "A_final": a_t[-1],
        "average_forgetting": float(np.mean(forgetting)) if forgetting else 0.0,
        "min_old_class_acc": min(old) if old else None,
    }


class Oracle:
    """The benchmark's own judge of generated images: trained on every real training image, all classes."""

    def __init__(self, args, pool: dict, seed: int, shape) -> None:
        started = time.perf_counter()
        cfg = dgm_config(args, "dgmw", shape)
        n = len(pool["y_train"])
        self.epochs = max(ORACLE_EPOCHS, math.ceil(ORACLE_MIN_STEPS / math.ceil(n / cfg.batch_size)))
        self.clf = PlainClassifier(cfg, seed=10_000 + seed, device=args.device or "cpu")
        self.clf.fit(pool["x_train"], pool["y_train"], epochs=self.epochs)
        pred = np.asarray(self.clf.predict(pool["x_test"]))
        self.record = {
            "train_images": n,
            "epochs": self.epochs,
            "test_accuracy": float(np.mean(pred == pool["y_test"])),
            "class_test_accuracy": {
                c: float(np.mean(pred[pool["y_test"] == c] == c)) for c in pool["classes"]
            },
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(f"oracle seed {seed}: test accuracy {self.record['test_accuracy']:.3f}", flush=True)

    def fidelity(self, learner: Learner, seed: int) -> dict[str, float]:
        """Per class: fraction of FIDELITY_SAMPLES generated images the oracle labels as that class."""
        out = {}
        for c in learner.classes:
            pred = np.asarray(self.clf.predict(learner.sample(c, FIDELITY_SAMPLES, seed=seed)))
            out[c] = float(np.mean(pred == c))
        return out


# ----- runs ------------------------------------------------------------------------------------
def run_dgm(args, ctx: dict, variant: str, overrides: dict) -> dict:
    tasks, pool, seed = ctx["tasks"], ctx["pool"], ctx["seed"]
    x_train, y_train = ctx["x_train"], ctx["y_train"]
    cfg = dgm_config(args, variant, ctx["shape"], overrides)
    learner = Learner(cfg, seed=seed, device=args.device)
    matrix, class_matrix, per_version, gate = [], [], [], []
    holdout = held_out(pool, ctx["size"], seed, args.fidelity_reference) if args.fidelity_reference else {}
    for t, classes in enumerate(tasks):
        x, y = select(x_train, y_train, classes)
        reference = None
        if holdout and len(classes) == 1 and t:  # a one-class task: its judge learns it against these
            earlier = [c for task in tasks[:t] for c in task]
            ref_y = [c for c in earlier for _ in holdout[c]]
            reference = (np.concatenate([holdout[c] for c in earlier]), ref_y)
        report = learner.learn_task(x, y, reference=reference)
        per_task, per_class = evaluate(lambda v: learner.predict(v)[0], pool, tasks, t)
        matrix.append(per_task)
        class_matrix.append(per_class)
        if t:
            gate.append(gate_evidence(lambda v: learner.predict(v)[1], learner.classes, pool, tasks, t))
        epochs, batches = budget(cfg, len(x), len(classes))
        per_version.append(
            {
                "classes": classes,
                "images": len(x),
                "epochs": epochs,
                "steps": epochs * batches,
                "seconds": report.seconds,
                "generator_parameters": learner.generator_parameter_count(),
                "parameters": learner.parameter_count(),
                "widths": report.widths,
                "mask_usage": report.mask_usage,
                "units_added": report.units_added,
                "low_fidelity": report.low_fidelity,
                "losses": report.losses,
            }
        )
        name = ctx["label"].replace("/class", "").replace(" ", "_")  # file stem of this run's outputs
        if args.samples:  # what the memory draws after this task: the service's samples.png of the version
            grid = render_grid({c: learner.sample(c, n=SAMPLES_PER_CLASS, seed=0) for c in learner.classes})
            (Path(args.samples) / f"{name}_v{t + 1}.png").write_bytes(grid)
        print(
            f"  {ctx['label']} task {t} {classes}: A_t={np.mean(per_task):.3f} {report.seconds:.0f}s "
            f"({epochs * batches} steps) widths={report.widths}",
            flush=True,
        )
    if args.checkpoints:  # the last version's learner, for offline probes of the classifier step
        learner.save(Path(args.checkpoints) / f"{name}.safetensors")
    gen = [v["generator_parameters"] for v in per_version]
    total = [v["parameters"] for v in per_version]
    own = learner.fidelity()
    oracle = ctx["oracle"]()
    bench = oracle.fidelity(learner, seed)
    return {
        **run_metrics(matrix, class_matrix, tasks),
        "gate_evidence": gate,
        "seconds_per_task": [v["seconds"] for v in per_version],
        "generator_parameters_per_version": gen,
        "parameters_per_version": total,
        "generator_growth": gen[-1] / gen[0],
        "total_growth": total[-1] / total[0],
        "learner_fidelity": own,
        "learner_min_fidelity": min((f for f in own.values() if f is not None), default=None),
        "fidelity": bench,
        "min_fidelity": min(bench.values()),
        # fidelity / the oracle's accuracy on the class's real test images: 1.0 = as recognisable as real
        "fidelity_relative": {
            c: f / max(oracle.record["class_test_accuracy"][c], 1e-9) for c, f in bench.items()
        },
        "oracle": oracle.record,
        "per_version": per_version,
        "config": cfg.to_dict(),
    }


def run_baseline(args, ctx: dict, method: str) -> dict:
    """finetune: one classifier trained task after task on the new classes only (lower bound);
    joint: at every t a fresh classifier on the real images of tasks 0..t (upper bound).

    Each fit gets at least the epochs that DGM's budget (dgm.train.budget) gives an upload of its size,
    and at least as many batches as a DGM learner takes for task t: the budget it is compared with.
    """
    tasks, pool, seed = ctx["tasks"], ctx["pool"], ctx["seed"]
    x_train, y_train = ctx["x_train"], ctx["y_train"]
    cfg = dgm_config(args, "dgmw", ctx["shape"])
    device = args.device or "cpu"
    clf = PlainClassifier(cfg, seed=seed, device=device)
    matrix, class_matrix, seconds, epochs_per_task, batches_per_task, dgm_steps, params, gate = (
        [] for _ in range(8)
    )
    for t, classes in enumerate(tasks):
        if method == "joint":
            clf = PlainClassifier(cfg, seed=seed, device=device)
            x, y = select(x_train, y_train, [c for task in tasks[: t + 1] for c in task])
        else:
            x, y = select(x_train, y_train, classes)
        dgm_epochs, dgm_batches = budget(cfg, int(np.isin(y_train, classes).sum()), len(classes))
        # its own floor is the preset's epochs and `steps` (one class: no per-class floor), then DGM's steps
        epochs, batches = budget(cfg, len(x), 1)
        epochs = max(epochs, math.ceil(dgm_epochs * dgm_batches / batches))
        dgm_steps.append(dgm_epochs * dgm_batches)
        started = time.perf_counter()
        clf.fit(x, y, epochs=epochs)
        seconds.append(round(time.perf_counter() - started, 3))
        epochs_per_task.append(epochs)
        batches_per_task.append(epochs * batches)
        params.append(clf.parameter_count())
        per_task, per_class = evaluate(clf.predict, pool, tasks, t)
        matrix.append(per_task)
        class_matrix.append(per_class)
        if t:
            gate.append(gate_evidence(clf.scores, clf.classes, pool, tasks, t))
        print(f"  {ctx['label']} task {t}: A_t={np.mean(per_task):.3f} {seconds[-1]:.0f}s", flush=True)
    return {
        **run_metrics(matrix, class_matrix, tasks),
        "gate_evidence": gate,
        "seconds_per_task": seconds,
        "epochs_per_task": epochs_per_task,
        "batches_per_task": batches_per_task,
        "dgm_steps_per_task": dgm_steps,
        "parameters_per_version": params,
        "config": cfg.to_dict(),
    }


def time_masked_step(args, shape, variant="dgmw", repeats=20, task=0) -> dict:
    """Seconds per training step (D and G) with masks, and the same network with masking switched off.

    task=1 times a later task: a first task's random half mask is reserved (its gradients are blocked)
    and the preset's claim cap, if any, selects the second task's free entries at every step.
    """
    from dgm.networks import Discriminator

    def sync() -> None:  # CUDA runs asynchronously: wait for the queued steps before reading the clock
        if learner.device.type == "cuda":
            torch.cuda.synchronize()

    torch.set_flush_denormal(True)  # as Learner.learn_task does: subnormals make CPU steps ~15x slower
    learner = Learner(dgm_config(args, variant, shape), seed=0, device=args.device)
    cfg, gen = learner.config, learner.generator
    rng = torch.Generator(device=learner.device).manual_seed(0)
    gen.begin_task(2)
    if task:
        with torch.no_grad():
            for e in gen.embedding:
                e.uniform_(-1, 1, generator=rng)
        gen.end_task()
        gen.begin_task(2)
    disc = Discriminator.for_task(cfg, shape[0], 2 + 2 * task).to(learner.device)
    trainer = TaskTrainer(cfg, gen, disc, task, rng)
    x = torch.rand(cfg.batch_size, shape[0], 32, 32, device=learner.device) * 2 - 1
    y = torch.randint(0, 2, (cfg.batch_size,), device=learner.device) + 2 * task  # the task's class ids
    empty_x, empty_y = x[:0], y[:0]
    out = {}
    for masking in (True, False, True, False):
        gen.masking = masking
        for _ in range(3):
            trainer.step(x, y, empty_x, empty_y, 0, 100.0, 1000.0)
        sync()
        started = time.perf_counter()
        for _ in range(repeats):
            trainer.step(x, y, empty_x, empty_y, 0, 100.0, 1000.0)
        sync()
        out.setdefault("masked" if masking else "unmasked", []).append(
            (time.perf_counter() - started) / repeats
        )
    masked, unmasked = min(out["masked"]), min(out["unmasked"])
    return {
        "variant": variant,
        "task": task,
        "claim_cap": cfg.claim_cap,
        "batch_size": cfg.batch_size,
        "masked_step_s": masked,
        "unmasked_step_s": unmasked,
        "ratio": masked / unmasked,
        "target_ratio": TARGETS["masked_step_ratio"],
        "threads": torch.get_num_threads(),
        "device": run_device(args),
        "date": describe()["date"],
    }


# ----- summary and targets ---------------------------------------------------------------------
def run_device(args) -> str:
    """Where the run trained: the learner's default is CUDA when present (dgm.Learner)."""
    if args.device:
        return torch.device(args.device).type
    return "cuda" if torch.cuda.is_available() else "cpu"


def run_key(run: dict) -> tuple:
    return (run["protocol"], run["train_per_class"], run["seed"], run["method"])


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _sd(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def _worst(values) -> float | None:
    """The lowest over seeds: targets that say "no class below" or "for every class" hold on every seed."""
    return min((v for v in values if v is not None), default=None)


def method_order(method: str) -> tuple:
    """dgmw, dgma, joint, finetune, then the ablation's dgmw-<lever> and dgma-<lever> rows."""
    base, _, lever = method.partition("-")
    return (bool(lever), METHODS.index(base) if base in METHODS else len(METHODS), lever)


def off_default(run: dict, settings: dict) -> dict[str, Any]:
    """A DGM run's hyper-parameters that differ from today's default for its variant (the preset with
    the settings' --set and the run's lever overrides), as {key: the run's value}. A key missing from an
    older run's config took the dataclass default, as an old checkpoint does. Baselines: {}."""
    cfg = run.get("config")
    if not cfg or run["method"].partition("-")[0] not in ("dgmw", "dgma"):
        return {}
    ran = {**LearnerConfig().to_dict(), **cfg}
    default = LearnerConfig.preset(
        settings.get("preset", "small"),
        image_shape=tuple(cfg["image_shape"]),
        variant=cfg["variant"],
        **{**settings.get("set", {}), **lever_overrides(run)},
    )
    today = default.to_dict()
    inert = INERT.get(cfg["variant"], ())
    off = {k: ran[k] for k in today if ran.get(k) != today[k] and k not in inert}
    if BUDGET_KEYS & off.keys() and same_budget(run, default):
        off = {k: v for k, v in off.items() if k not in BUDGET_KEYS}  # other floors, the same steps
    return off


def lever_overrides(run: dict) -> dict[str, Any]:
    """The overrides a run's lever stands for: those it ran with, over its definition today, which may
    name a key added later (no_step_floor also drops the per-class floor that came after its runs)."""
    return {**LEVERS.get(run.get("lever") or "", {}).get("overrides", {}), **(run.get("overrides") or {})}


# the keys that only set a task's step budget (dgm.train.budget)
BUDGET_KEYS = {"epochs", "steps", "steps_per_class"}


def same_budget(run: dict, cfg: LearnerConfig) -> bool:
    """Whether every task of a DGM run trained the steps `cfg` would give it (epochs x batches)."""
    versions = run.get("per_version") or []
    return bool(versions) and all(
        {"steps", "images", "classes"} <= v.keys()
        and v["steps"] == math.prod(budget(cfg, v["images"], len(v["classes"])))
        for v in versions
    )


def summarise(runs: list[dict], settings: dict | None = None) -> list[dict]:
    """One row per protocol x size x method: means (and sds) over seeds."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["protocol"], run["train_per_class"], run["method"]), []).append(run)
    rows = []
    protocols = list(PROTOCOLS)
    for (protocol, size, method), group in sorted(
        groups.items(),
        key=lambda kv: (
            protocols.index(kv[0][0]) if kv[0][0] in protocols else 99,
            kv[0][1],
            method_order(kv[0][2]),
        ),
    ):
        group.sort(key=lambda r: r["seed"])
        finals = [r["A_final"] for r in group]
        a_t = np.array([r["A_t"] for r in group])
        # seconds from CPU runs where the group has any: a GPU seed must not lower a CPU figure
        timed = [r for r in group if r.get("device", "cpu") == "cpu"] or group
        secs = [float(np.mean(r["seconds_per_task"])) for r in timed]
        rows.append(
            {
                "protocol": protocol,
                "train_per_class": size,
                "method": method,
                "lever": group[0].get("lever"),
                "lever_description": group[0].get("lever_description"),
                "overrides": group[0].get("overrides") or {},
                "seeds": [r["seed"] for r in group],
                # seeds whose run is not at today's default (an older default it was not rerun at), and how
                "off_default": {
                    str(r["seed"]): off for r in group if (off := off_default(r, settings or {}))
                },
                "tasks": len(group[0]["A_t"]),
                "final_a_mean": _mean(finals),
                "final_a_sd": _sd(finals),
                "a_t_mean": a_t.mean(0).tolist(),
                "a_t_sd": a_t.std(0, ddof=1).tolist() if len(group) > 1 else None,
                "average_forgetting": _mean(r["average_forgetting"] for r in group),
                "min_old_class_acc": _mean(r["min_old_class_acc"] for r in group),
                "min_old_class_acc_sd": _sd(r["min_old_class_acc"] for r in group),
                "min_old_class_acc_worst": _worst(r["min_old_class_acc"] for r in group),
                "min_fidelity": _mean(r.get("min_fidelity") for r in group),
                "min_fidelity_sd": _sd(r.get("min_fidelity") for r in group),
                "min_fidelity_worst": _worst(r.get("min_fidelity") for r in group),
                "min_fidelity_relative": _mean(
                    min(r["fidelity_relative"].values()) if r.get("fidelity_relative") else None
                    for r in group
                ),
                "oracle_test_accuracy": _mean((r.get("oracle") or {}).get("test_accuracy") for r in group),
                "learner_min_fidelity": _mean(r.get("learner_min_fidelity") for r in group),
                "learner_min_fidelity_worst": _worst(r.get("learner_min_fidelity") for r in group),
                "generator_growth": _mean(r.get("generator_growth") for r in group),
                "total_growth": _mean(r.get("total_growth") for r in group),
                "generator_parameters_first": _mean(
                    (r.get("generator_parameters_per_version") or [None])[0] for r in group
                ),
                "generator_parameters_last": _mean(
                    (r.get("generator_parameters_per_version") or [None])[-1] for r in group
                ),
                "seconds_per_task": _mean(secs),
                "seconds_per_task_sd": _sd(secs),
                "seconds_device": timed[0].get("device", "cpu"),
                "devices": {
                    d: [r["seed"] for r in group if r.get("device", "cpu") == d]
                    for d in sorted({r.get("device", "cpu") for r in group})
                },
                "epochs_per_task": group[0].get("epochs_per_task"),
                "batches_per_task": group[0].get("batches_per_task"),
                # the DGM budget of each task: its own steps, or the one a baseline was matched to
                "dgm_steps_per_task": [v["steps"] for v in group[0]["per_version"]]
                if "per_version" in group[0]
                else group[0].get("dgm_steps_per_task"),
            }
        )
    return rows


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def _target(value, limit: float, at_least: bool, detail: str) -> dict:
    ok = value is not None and (value >= limit if at_least else value <= limit)
    return {
        "value": value,
        "target": f"{'>=' if at_least else '<='} {limit:g}",
        "pass": bool(ok),
        "detail": detail,
    }


def evaluate_targets(
    summary: list[dict], masked_step: list[dict], task_timing: dict | None = None
) -> dict[str, dict]:
    """Issue 9's targets, each with the measured value (means over seeds) and pass/fail. `task_timing`:
    benchmarks.train_time's DGMw task at today's default (alone on the machine), if there is one; the
    accuracy runs share their cores, so their own seconds stand in only without it."""
    rows = {(r["protocol"], r["train_per_class"], r["method"]): r for r in summary}
    out: dict[str, dict] = {}
    for (protocol, size, method), row in rows.items():
        where = f"{protocol} {size}/class"
        joint = rows.get((protocol, size, "joint"))
        if method == "dgmw" and joint and joint["final_a_mean"]:
            out[f"dgmw_vs_joint {where}"] = _target(
                row["final_a_mean"] / joint["final_a_mean"],
                TARGETS["dgmw_vs_joint"],
                True,
                f"DGMw final A {row['final_a_mean']:.3f} / joint {joint['final_a_mean']:.3f}, "
                f"seeds {row['seeds']}",
            )
        if method == "dgmw" and protocol == "5x2":
            out[f"min_old_class_acc {where}"] = _target(  # "no old class below": every seed counts
                row["min_old_class_acc_worst"],
                TARGETS["min_old_class_acc_5x2"],
                True,
                "DGMw: worst old class after the last task on the worst seed "
                f"(mean over seeds {_fmt(row['min_old_class_acc'])})",
            )
        if method in ("dgmw", "dgma"):
            out[f"min_fidelity {method} {where}"] = _target(  # "for every class": every seed counts
                row["min_fidelity_worst"],
                TARGETS["min_fidelity"],
                True,
                "the benchmark oracle's fidelity of the worst class after the last task on the worst seed "
                f"(mean over seeds {_fmt(row['min_fidelity'])}; relative to the oracle's accuracy on that "
                f"class's real test images: {_fmt(row['min_fidelity_relative'])}; oracle test accuracy "
                f"{_fmt(row['oracle_test_accuracy'])})",
            )
            if row.get("learner_min_fidelity_worst") is not None:  # multi-class tasks only
                out[f"learner_fidelity {method} {where}"] = _target(
                    row["learner_min_fidelity_worst"],
                    TARGETS["min_fidelity"],
                    True,
                    "the service's own memory fidelity (what a version stores: a classifier trained on the "
                    "task's real images labels 400 samples of each of its classes), worst class on the worst "
                    "seed; one-class tasks have none without --fidelity-reference (with it, relative to "
                    "the judge's rate on real images of the class)",
                )
            measured = rows.get((protocol, size, f"{method}-{ONE_CLASS_MEASURED}"))
            if row.get("learner_min_fidelity_worst") is None and measured is not None:
                out[f"learner_fidelity {method} {where}"] = _target(  # one-class tasks: the lever's runs
                    measured["learner_min_fidelity_worst"],
                    TARGETS["min_fidelity"],
                    True,
                    f"the service's own memory fidelity from the {ONE_CLASS_MEASURED} runs (today's default "
                    "trained the same way, with --fidelity-reference 200 as the service passes it: each "
                    "one-class task's judge learns its class against real held-out images of the known "
                    "ones, relative to the judge's rate on real images of the class), worst class on the "
                    f"worst seed; seeds {measured['seeds']}",
                )
            if row["tasks"] >= 10:
                out[f"generator_growth {method} {where}"] = _target(
                    row["generator_growth"],
                    TARGETS["generator_growth_10_tasks"],
                    False,
                    f"generator parameters after {row['tasks']} tasks / after the first",
                )
        if method == "dgmw" and protocol == "5x2" and size == 800 and not task_timing:
            out["seconds_1600_image_task dgmw 5x2 800/class"] = _target(
                row["seconds_per_task"],
                TARGETS["seconds_1600_image_task"],
                False,
                "mean seconds per 1600-image task (28x28), at the runs' torch threads (see runs)",
            )
    if task_timing:
        out["seconds_1600_image_task dgmw"] = _target(
            task_timing["seconds"],
            TARGETS["seconds_1600_image_task"],
            False,
            f"one 1600-image 28x28 task at today's default, alone on {task_timing['cpu']} at "
            f"{task_timing['threads']} torch threads, {task_timing['date'][:10]} "
            "(python -m benchmarks.train_time)",
        )
    by_variant: dict[str, list[dict]] = {}
    for m in masked_step:
        by_variant.setdefault(m["variant"], []).append(m)
    for variant, timings in by_variant.items():
        timings.sort(key=lambda m: m["ratio"])
        mid = timings[len(timings) // 2]
        out[f"masked_step_ratio {variant}"] = _target(
            mid["ratio"],
            TARGETS["masked_step_ratio"],
            False,
            f"one training step (D and G, batch {mid['batch_size']}) masked {mid['masked_step_s'] * 1000:.1f}"
            f" ms vs unmasked {mid['unmasked_step_s'] * 1000:.1f} ms, the median of {len(timings)} timing(s)",
        )
    return out


def finish(results: dict) -> dict:
    results["runs"].sort(
        key=lambda r: (r["protocol"], r["train_per_class"], r["seed"], method_order(r["method"]))
    )
    results["summary"] = summarise(results["runs"], results.get("settings"))
    shape = next((r["config"]["image_shape"] for r in results["runs"] if r.get("config")), None)
    timing = default_task_timing(results.get("settings") or {}, image_shape=tuple(shape)) if shape else None
    results["targets"] = evaluate_targets(results["summary"], results.get("masked_step", []), timing)
    return results


def default_task_timing(
    settings: dict, path: Path | None = None, image_shape: tuple[int, int, int] = (1, 28, 28)
) -> dict | None:
    """benchmarks.train_time's DGMw task (benchmarks/results/train_time.json), if it ran the config that
    these settings make today for images of `image_shape` (the runs'): seconds, cpu, threads and date.
    None for any other config (a colour learner's, say, against the grey timing) or no file.
    A stored config lacking an option added since reads it at its default: options are added off by
    default, training as before (2026-12-06: `truncation` and `lam_aux` had made the timing of today's
    default fail to match, so the target fell back to the runs' shared-core seconds)."""
    path = path or RESULTS / "train_time.json"
    if settings.get("quick") or not path.exists():
        return None
    timing = json.loads(path.read_text())
    today = LearnerConfig.preset(
        settings.get("preset", "small"), image_shape=image_shape, **settings.get("set", {})
    ).to_json()
    for task in timing.get("tasks", []):
        config = task.get("config")
        if task["variant"] == "dgmw" and config and _as_today(config) == today:
            machine = timing["machine"]
            return {
                "seconds": task["seconds"], "cpu": f"{machine['cpu']}, {machine['cpu_cores']} cores",
                "threads": timing["threads"], "date": machine["date"],
            }  # fmt: skip
    return None


def _as_today(config: dict) -> str | None:
    """A stored config as today's LearnerConfig writes it (options it lacks at their defaults); None if
    today's LearnerConfig refuses it (an option since removed)."""
    try:
        return LearnerConfig.from_dict(config).to_json()
    except DGMInputError:
        return None


# ----- output ----------------------------------------------------------------------------------
def write(results: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=1, default=str))
    tmp.replace(out)


def plot(results: dict, path: Path) -> list[Path]:
    """A_t curves (mean +- sd over seeds) per protocol x size, and DGMw's per-class accuracy heatmaps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    summary = results["summary"]
    order = list(PROTOCOLS)
    panels = sorted(
        {(r["protocol"], r["train_per_class"]) for r in summary},
        key=lambda p: (p[1], order.index(p[0]) if p[0] in order else len(order), p[0]),
    )
    if not panels:
        return []
    written = []
    # a row per size, a column per protocol: each protocol stays in its column at every size
    protocols = sorted(
        {p for p, _ in panels}, key=lambda p: (order.index(p) if p in order else len(order), p)
    )
    sizes = sorted({n for _, n in panels})
    rows, cols = len(sizes), len(protocols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4 * rows), squeeze=False)
    data = "digits" if results["settings"]["quick"] else results["settings"]["data"].split(" from ")[0]
    used = [axes[sizes.index(n), protocols.index(p)] for p, n in panels]
    for ax, (protocol, size) in zip(used, panels, strict=True):
        for row in (r for r in summary if (r["protocol"], r["train_per_class"]) == (protocol, size)):
            mean = np.array(row["a_t_mean"])
            x = np.arange(1, len(mean) + 1)
            style = "--" if row["lever"] else "-"
            (line,) = ax.plot(
                x, mean, style, marker="o", ms=3, label=f"{row['method']} (n={len(row['seeds'])})"
            )
            if row["a_t_sd"]:
                sd = np.array(row["a_t_sd"])
                ax.fill_between(x, mean - sd, mean + sd, color=line.get_color(), alpha=0.15)
        ax.set_title(f"{data} {protocol}, {size or 'all'} images/class")
        ax.set_xlabel("tasks learned")
        ax.set_ylabel("A_t (mean accuracy over tasks seen)")
        ax.set_ylim(0, 1.02)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes.flat:
        if not any(ax is u for u in used):
            ax.axis("off")
    fig.suptitle(f"preset {results['settings']['preset']}; mean ± sd over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    heat = [
        p
        for p in panels
        if any(r["method"] == "dgmw" and (r["protocol"], r["train_per_class"]) == p for r in results["runs"])
    ]
    if heat:
        fig, axes = plt.subplots(1, len(heat), figsize=(5 * len(heat), 4.4), squeeze=False)
        for ax, (protocol, size) in zip(axes[0], heat, strict=True):
            group = [
                r for r in results["runs"]
                if r["method"] == "dgmw" and (r["protocol"], r["train_per_class"]) == (protocol, size)
            ]  # fmt: skip
            grids = np.array(
                [
                    [[np.nan if a is None else a for a in row] for row in r["class_accuracy_matrix"]]
                    for r in group
                ],
                dtype=float,
            )
            seen = (~np.isnan(grids)).sum(0)
            grid = np.where(seen > 0, np.nansum(grids, 0) / np.maximum(seen, 1), np.nan)  # mean over seeds
            im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
            classes = [c for task in group[0]["tasks"] for c in task]
            ax.set_xticks(range(len(classes)), classes, rotation=60, fontsize=7, ha="right")
            ax.set_yticks(range(len(grid)), [str(t + 1) for t in range(len(grid))], fontsize=7)
            ax.set_ylabel("after task")
            ax.set_title(f"DGMw {protocol}, {size or 'all'}/class (n={len(group)})", fontsize=9)
            for (i, j), v in np.ndenumerate(grid):
                if not np.isnan(v):
                    ax.text(
                        j, i, f"{v:.2f}", ha="center", va="center", fontsize=5, color="w" if v < 0.6 else "k"
                    )
        fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="accuracy on real test images of the class")
        classes_path = path.with_name(path.stem + "_dgmw_classes.png")
        fig.savefig(classes_path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(classes_path)
    return written


def publish(results: dict, out: Path) -> None:
    finish(results)
    write(results, out)


# ----- the command -----------------------------------------------------------------------------
def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="dgm bench accuracy", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data-dir", default=str(FASHION_MNIST_DIR), help="folder with the four IDX files")
    add_labels_argument(p, "Fashion-MNIST's, or digit words (zero..nine) for digit sets")
    p.add_argument(
        "--colour", action="store_true",
        help="tint every image (ink and background a colour each, per image; dgm.data.colourise): "
        "a 3-channel learner on the set's real shapes",
    )  # fmt: skip
    p.add_argument(
        "--shuffle-classes", action="store_true",
        help="split the classes into tasks in a random order per seed instead of the set's own order",
    )  # fmt: skip
    p.add_argument(
        "--protocols",
        nargs="+",
        default=None,
        choices=list(PROTOCOLS),
        help="default 5x2 10x1; 2x5 on request",
    )
    p.add_argument(
        "--train-per-class", "--sizes", dest="sizes", nargs="+", type=int, default=None,
        help="training images per class, one run set per size (0 = all); default 800 2000",
    )  # fmt: skip
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="default 0 1 2")
    p.add_argument(
        "--methods", nargs="*", default=None, choices=list(METHODS),
        help=f"default {' '.join(METHODS)}; with --ablation/--levers/--lever default none (levers only)",
    )  # fmt: skip
    p.add_argument(
        "--ablation", action="store_true", help=f"also each lever, one at a time: {', '.join(LEVERS)}"
    )
    p.add_argument("--levers", nargs="+", default=None, metavar="NAME", help="run only these levers")
    p.add_argument(
        "--lever-variant", default="dgmw", choices=("dgmw", "dgma"), help="the mask variant levers run on"
    )
    p.add_argument(
        "--lever", nargs="+", action="append", default=[], metavar=("NAME", "KEY=JSON"),
        help="an extra lever: --lever no_sparsity lam=0 (repeatable)",
    )  # fmt: skip
    p.add_argument("--preset", default="small")
    p.add_argument(
        "--set", nargs="+", default=[], metavar="KEY=JSON", help="LearnerConfig overrides for every run"
    )
    p.add_argument("--max-tasks", type=int, default=0, help="stop each run after this many tasks (0 = all)")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--no-step-timing", action="store_true", help="skip the masked-vs-unmasked step timing")
    p.add_argument("--quick", action="store_true", help="seconds-long smoke run: Pillow digits, preset tiny")
    p.add_argument("--resume", action="store_true", help="keep the runs already in --out and skip them")
    p.add_argument(
        "--samples", default=None, metavar="DIR", help="write each DGM version's sample grid (PNG) here"
    )
    p.add_argument(
        "--fidelity-reference",
        type=int,
        default=0,
        metavar="N",
        help="a one-class task's fidelity judge learns its class against N real images of each earlier "
        "class, left out of the run's subsample (the service's holdout; 0: none, one-class tasks report "
        "no learner fidelity)",
    )
    p.add_argument(
        "--checkpoints", default=None, metavar="DIR", help="save each DGM run's last learner (safetensors)"
    )
    p.add_argument("--merge", nargs="+", default=None, metavar="JSON", help="merge these results into --out")
    p.add_argument(
        "--out", default=None, help="results JSON (default benchmarks/results/accuracy[_quick].json)"
    )
    args = p.parse_args(argv)
    levers = dict(LEVERS)
    for name, *pairs in args.lever:
        levers[name] = {"overrides": parse_pairs(pairs), "description": " ".join(pairs)}
    chosen = args.levers or ([e[0] for e in args.lever] if args.lever and not args.ablation else None)
    unknown = sorted(set(chosen or []) - set(levers))
    if unknown:
        p.error(f"unknown lever(s) {unknown}; known: {sorted(levers)}")
    args.lever_defs = {n: levers[n] for n in (chosen or levers)} if (args.ablation or chosen) else {}
    if args.methods is None:
        args.methods = [] if args.lever_defs else list(METHODS)
    args.set = parse_pairs(args.set)
    for folder in (args.samples, args.checkpoints):
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
    if args.quick:  # seconds: two tasks, the tiny preset at 40 steps, no per-task fidelity classifier
        args.preset = "tiny"
        args.set = {**QUICK_SET, **args.set}
        args.protocols = args.protocols or ["5x2"]
        args.sizes = args.sizes or [40]
        args.seeds = args.seeds or [0]
        args.max_tasks = args.max_tasks or 2
    args.protocols = args.protocols or ["5x2", "10x1"]  # 2x5 on request
    args.sizes = args.sizes or [800, 2000]
    args.seeds = args.seeds if args.seeds is not None else [0, 1, 2]
    return args


def settings(args) -> dict:
    return {
        "quick": args.quick,
        "preset": args.preset,
        "set": args.set,
        "data": (
            "digits drawn by benchmarks.digits (Pillow)"
            if args.quick
            else f"{'Fashion-MNIST' if args.labels == 'fashion' else 'digits (IDX)'} from {args.data_dir}"
        )
        + (", tinted per image to RGB (dgm.data.colourise)" if args.colour else "")
        + (f", classes in {SHUFFLED_ORDER}" if args.shuffle_classes else ""),
        "labels": "class names (digit words, Fashion-MNIST names): sorted order is not the class order",
        "max_tasks": args.max_tasks,
        "oracle": f"dgm.baselines.PlainClassifier on every real training image, >= {ORACLE_EPOCHS} epochs",
        "fidelity_samples": FIDELITY_SAMPLES,
        "baseline_budget": "per fit: >= the preset's epochs and >= the DGM task's steps, in batches",
    }


def check_compatible(a: dict, b: dict, what: str) -> None:
    diff = {k: (a.get(k), b.get(k)) for k in COMPATIBLE if a.get(k) != b.get(k)}
    if diff:
        raise SystemExit(f"{what}: settings differ, refusing to mix the runs: {diff}")


def merge(paths: list[str], out: Path) -> dict:
    merged: dict | None = None
    seen: set[tuple] = set()
    for path in paths:
        res = json.loads(Path(path).read_text())
        if merged is None:
            merged = {**res, "runs": [], "masked_step": [], "merged_from": []}
        check_compatible(merged["settings"], res["settings"], f"--merge {path}")
        kept = 0
        for run in res["runs"]:
            if run_key(run) in seen:
                print(f"{path}: duplicate run {run_key(run)} skipped (the first file's is kept)", flush=True)
                continue
            seen.add(run_key(run))
            merged["runs"].append(run)
            kept += 1
        merged["masked_step"] += [m for m in res.get("masked_step", []) if m not in merged["masked_step"]]
        entry = {"file": str(path), "machine": res.get("machine"), "runs": kept}
        if res.get("merged_from"):  # a merged file keeps where its own runs came from
            entry["merged_from"] = res["merged_from"]
        merged["merged_from"].append(entry)
    assert merged is not None
    publish(merged, out)
    for written in plot(merged, out.with_suffix(".png")):
        print(f"wrote {written}")
    print(f"wrote {out}: {len(merged['runs'])} runs")
    return merged


def lever_changes_nothing(args, variant: str, overrides: dict) -> bool:
    """Whether `overrides` leave the variant's preset (with --set) as it is, inert keys aside."""
    live = {k: v for k, v in overrides.items() if k not in INERT.get(variant, ())}
    preset = functools.partial(LearnerConfig.preset, args.preset, variant=variant)
    return preset(**args.set) == preset(**{**args.set, **live})


def run_one(args, pool: dict, shape, seed: int, size: int, protocol: str, method: str, oracle) -> dict:
    """One run: `method` (dgmw, dgma, joint, finetune, dgmw-<lever> or dgma-<lever>) on one protocol, size
    and seed."""
    x_train, y_train = subsample(pool, size, seed)
    order = list(pool["classes"])
    if args.shuffle_classes:  # the same order for every method of a seed, so they stay comparable
        order = [order[i] for i in np.random.default_rng(seed).permutation(len(order))]
    tasks = class_incremental(y_train, PROTOCOLS[protocol], order=order)[: args.max_tasks or None]
    label = f"{protocol} {size}/class seed {seed} {method}"
    print(f"{label}: {len(tasks)} tasks", flush=True)
    ctx = {
        "tasks": tasks, "x_train": x_train, "y_train": y_train, "pool": pool, "seed": seed, "shape": shape,
        "oracle": oracle, "label": label, "size": size,
    }  # fmt: skip
    variant, _, lever = method.partition("-")
    overrides = args.lever_defs[lever]["overrides"] if lever else {}
    if lever and lever_changes_nothing(args, variant, overrides):
        print(f"  note: lever {lever} {overrides} changes nothing for {variant}", flush=True)
    started = time.perf_counter()
    if method in ("joint", "finetune"):
        res = run_baseline(args, ctx, method)
    else:
        res = run_dgm(args, ctx, variant, overrides)
    run = {
        "protocol": protocol,
        "train_per_class": size,
        "seed": seed,
        "method": method,
        "lever": lever or None,
        "lever_description": args.lever_defs[lever]["description"] if lever else None,
        "overrides": overrides,
        "tasks": tasks,
        "test_images": int(np.isin(pool["y_test"], sum(tasks, [])).sum()),
        **res,
        "seconds": round(time.perf_counter() - started, 1),
        "threads": torch.get_num_threads(),
        "device": run_device(args),
        "date": describe()["date"],
    }
    if args.fidelity_reference and method not in ("joint", "finetune"):
        run["fidelity_reference"] = args.fidelity_reference  # per run: settings stay mergeable
    print(
        f"{label}: final A {run['A_final']:.3f}, min old class {_fmt(run['min_old_class_acc'])}, "
        f"min fidelity {_fmt(run.get('min_fidelity'))}, {run['seconds']:.0f}s",
        flush=True,
    )
    return run


def main(argv=None) -> dict:
    args = parse(argv)
    stem = "accuracy_quick" if args.quick else "accuracy"
    out = Path(args.out) if args.out else RESULTS / f"{stem}.json"
    if args.merge:
        return merge(args.merge, out)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {"machine": describe(), "settings": settings(args), "runs": [], "masked_step": []}
    if args.resume and out.exists():
        previous = json.loads(out.read_text())
        check_compatible(previous.get("settings", {}), results["settings"], f"--resume {out}")
        results["runs"], results["masked_step"] = previous["runs"], previous.get("masked_step", [])
        print(f"resuming {out}: {len(results['runs'])} runs kept", flush=True)
    pool = load_pool(args.data_dir, args.labels, max(args.sizes) + 20 if args.quick else 0, args.colour)
    shape = (3 if args.colour else 1, *pool["x_train"].shape[1:3])
    timed = {m["variant"] for m in results["masked_step"]}
    if not args.no_step_timing:
        for variant in [m for m in ("dgmw", "dgma") if m in args.methods and m not in timed]:
            repeats = 5 if args.quick else 20
            results["masked_step"].append(time_masked_step(args, shape, variant, repeats=repeats))
            publish(results, out)
    oracles: dict[int, Oracle] = {}  # trained once per seed, when the first DGM run of the seed needs it

    def oracle_for(seed: int) -> Oracle:
        if seed not in oracles:
            oracles[seed] = Oracle(args, pool, seed, shape)
        return oracles[seed]

    done = {run_key(r) for r in results["runs"]}
    variant = args.lever_variant
    skipped = [n for n, d in args.lever_defs.items() if variant not in d.get("variants", (variant,))]
    if skipped:
        print(f"skip lever(s) {skipped}: they change nothing for {variant}", flush=True)
    methods = [*args.methods, *(f"{variant}-{n}" for n in args.lever_defs if n not in skipped)]
    for seed in args.seeds:
        for size in args.sizes:
            for protocol in args.protocols:
                for method in methods:
                    if (protocol, size, seed, method) in done:
                        print(f"skip {(protocol, size, seed, method)}: already in {out}", flush=True)
                        continue
                    oracle = functools.partial(oracle_for, seed)
                    results["runs"].append(run_one(args, pool, shape, seed, size, protocol, method, oracle))
                    publish(results, out)  # after every run: a stopped benchmark keeps what it did
    publish(results, out)
    written = plot(results, out.with_suffix(".png"))
    print(f"wrote {out}" + "".join(f" and {p}" for p in written))
    for name, t in results["targets"].items():
        print(f"  target {name}: {_fmt(t['value'])} ({t['target']}) {'pass' if t['pass'] else 'FAIL'}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
