"""Class-incremental accuracy of DGMw and DGMa against joint training and fine-tuning, in one run.

    python -m benchmarks.accuracy                 # CPU budget: Fashion-MNIST, 2000 images/class, 3 epochs
    python -m benchmarks.accuracy --train-per-class 0 --epochs 30 --device cuda   # full length on a GPU
    dgm bench accuracy --quick                    # seconds: sklearn digits, tiny widths (smoke test)

Writes the accuracy matrices, A_t after every task, average forgetting, parameters and wall time per
task, a masked-vs-unmasked step timing and parameter growth to JSON, and the A_t curves to a PNG.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.machine import describe
from dgm import Learner, LearnerConfig
from dgm.baselines import PlainClassifier
from dgm.data import FASHION_MNIST_DIR, class_incremental, load_mnist_like, select
from dgm.train import TaskTrainer

RESULTS = Path(__file__).parent / "results"


def load_data(args) -> dict:
    if args.quick:
        from sklearn.datasets import load_digits

        d = load_digits()
        x, y = (d.images / 16 * 255).astype(np.uint8), d.target
        rng = np.random.default_rng(args.seed)
        test = np.zeros(len(y), bool)
        for c in range(10):
            test[rng.choice(np.where(y == c)[0], 30, replace=False)] = True
        return {"x_train": x[~test], "y_train": y[~test], "x_test": x[test], "y_test": y[test]}
    data = load_mnist_like(args.data_dir)
    if args.train_per_class:
        rng = np.random.default_rng(args.seed)
        keep = np.concatenate(
            [
                rng.choice(np.where(data["y_train"] == c)[0], args.train_per_class, replace=False)
                for c in np.unique(data["y_train"])
            ]
        )
        keep.sort()
        data["x_train"], data["y_train"] = data["x_train"][keep], data["y_train"][keep]
    return data


def config(args, variant: str, shape) -> LearnerConfig:
    overrides = {"epochs": args.epochs} if args.epochs else {}
    return LearnerConfig.preset(args.preset, image_shape=shape, variant=variant, **overrides)


def task_accuracies(predict, data, tasks, upto: int) -> list[float]:
    """Accuracy on each task's test classes for tasks 0..upto (predictions over every class seen)."""
    out = []
    for classes in tasks[: upto + 1]:
        x, y = select(data["x_test"], data["y_test"], classes)
        out.append(float(np.mean(np.asarray(predict(x)) == y.astype(str))))
    return out


def summarise(matrix: list[list[float]]) -> dict:
    a_t = [float(np.mean(row)) for row in matrix]
    last = matrix[-1]
    forgetting = [
        max(matrix[t][j] for t in range(j, len(matrix) - 1)) - last[j] for j in range(len(matrix) - 1)
    ]
    return {
        "accuracy_matrix": matrix,
        "A_t": a_t,
        "A_final": a_t[-1],
        "average_forgetting": float(np.mean(forgetting)) if forgetting else 0.0,
    }


def run_dgm(args, variant, data, tasks, shape) -> dict:
    learner = Learner(config(args, variant, shape), seed=args.seed, device=args.device)
    matrix, params, seconds, reports = [], [], [], []
    for t, classes in enumerate(tasks):
        x, y = select(data["x_train"], data["y_train"], classes)
        report = learner.learn_task(x, y)
        matrix.append(task_accuracies(lambda v: learner.predict(v)[0], data, tasks, t))
        params.append(report.parameters)
        seconds.append(report.seconds)
        reports.append({k: report.as_dict()[k] for k in ("widths", "mask_usage", "units_added", "free")})
        print(
            f"  {variant} task {t} {classes}: A_t={np.mean(matrix[-1]):.3f} {report.seconds:.0f}s "
            f"widths={report.widths}",
            flush=True,
        )
    gen_params = sum(
        p.numel() for n, p in learner.generator.named_parameters() if not n.startswith("embedding")
    )
    return {
        **summarise(matrix),
        "parameters_per_version": params,
        "seconds_per_task": seconds,
        "generator_parameters_final": gen_params,
        "layers_per_task": reports,
        "config": learner.config.to_dict(),
    }


def run_finetune(args, data, tasks, shape) -> dict:
    clf = PlainClassifier(config(args, "dgmw", shape), seed=args.seed, device=args.device or "cpu")
    epochs = clf.cfg.epochs
    matrix, seconds = [], []
    for t, classes in enumerate(tasks):
        started = time.perf_counter()
        clf.fit(*select(data["x_train"], data["y_train"], classes), epochs=epochs)
        seconds.append(round(time.perf_counter() - started, 3))
        matrix.append(task_accuracies(clf.predict, data, tasks, t))
    return {**summarise(matrix), "seconds_per_task": seconds, "epochs": epochs}


def run_joint(args, data, tasks, shape) -> dict:
    """Upper bound at every t: a fresh classifier trained on the real data of tasks 0..t together."""
    matrix, seconds = [], []
    epochs = config(args, "dgmw", shape).epochs
    for t in range(len(tasks)):
        clf = PlainClassifier(config(args, "dgmw", shape), seed=args.seed, device=args.device or "cpu")
        started = time.perf_counter()
        clf.fit(*select(data["x_train"], data["y_train"], sum(tasks[: t + 1], [])), epochs=epochs)
        seconds.append(round(time.perf_counter() - started, 3))
        matrix.append(task_accuracies(clf.predict, data, tasks, t))
    return {**summarise(matrix), "seconds_per_task": seconds, "epochs": epochs}


def time_masked_step(args, shape, variant="dgmw", repeats=20) -> dict:
    """Seconds per training step (D and G) with masks, and the same network with masking switched off."""
    learner = Learner(config(args, variant, shape), seed=args.seed, device=args.device)
    cfg, gen = learner.config, learner.generator
    from dgm.networks import Discriminator

    gen.begin_task(2)
    disc = Discriminator(shape[0], cfg.ndf, 2).to(learner.device)
    rng = torch.Generator(device=learner.device).manual_seed(0)
    trainer = TaskTrainer(cfg, gen, disc, 0, rng)
    x = torch.rand(cfg.batch_size, shape[0], 32, 32, device=learner.device) * 2 - 1
    y = torch.randint(0, 2, (cfg.batch_size,), device=learner.device)
    empty_x, empty_y = x[:0], y[:0]
    out = {}
    for masking in (True, False, True, False):
        gen.masking = masking
        for _ in range(3):
            trainer.step(x, y, empty_x, empty_y, 0, 100.0, 1000.0)
        started = time.perf_counter()
        for _ in range(repeats):
            trainer.step(x, y, empty_x, empty_y, 0, 100.0, 1000.0)
        out.setdefault("masked" if masking else "unmasked", []).append(
            (time.perf_counter() - started) / repeats
        )
    masked, unmasked = min(out["masked"]), min(out["unmasked"])
    return {
        "variant": variant,
        "batch_size": cfg.batch_size,
        "masked_step_s": masked,
        "unmasked_step_s": unmasked,
        "ratio": masked / unmasked,
        "target_ratio": 1.25,
    }


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    protocols = list(results["protocols"])
    fig, axes = plt.subplots(1, len(protocols), figsize=(5.5 * len(protocols), 4), squeeze=False)
    for ax, name in zip(axes[0], protocols, strict=True):
        for method, res in results["protocols"][name]["methods"].items():
            a_t = res["A_t"]
            ax.plot(range(1, len(a_t) + 1), a_t, marker="o", label=method)
        ax.set_title(f"Fashion-MNIST {name}" if not results["quick"] else f"digits {name}")
        ax.set_xlabel("tasks learned")
        ax.set_ylabel("A_t (mean accuracy over tasks seen)")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"epochs/task={results['epochs_per_task']}, train images/class={results['train_per_class']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _write(results: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1, default=str))
    tmp.replace(out)


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="dgm bench accuracy", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data-dir", default=str(FASHION_MNIST_DIR), help="folder with the four IDX files")
    p.add_argument("--train-per-class", type=int, default=2000, help="0 = all (6000 for Fashion-MNIST)")
    p.add_argument("--epochs", type=int, default=0, help="epochs per task (0 = the preset's)")
    p.add_argument("--preset", default="small")
    p.add_argument("--protocols", nargs="+", default=["5x2", "10x1"])
    p.add_argument("--variants", nargs="+", default=["dgmw", "dgma"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--quick", action="store_true", help="seconds-long smoke run on sklearn digits")
    p.add_argument(
        "--out", default=None, help="results JSON (default benchmarks/results/accuracy[_quick].json)"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.preset, args.train_per_class = "tiny", 0
        args.epochs = args.epochs or 2
    return args


def main(argv=None) -> dict:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_data(args)
    shape = (1, *data["x_train"].shape[1:3])
    stem = "accuracy_quick" if args.quick else "accuracy"
    out = Path(args.out) if args.out else RESULTS / f"{stem}.json"
    results = {
        "machine": describe(),
        "seed": args.seed,
        "quick": args.quick,
        "data": "sklearn digits" if args.quick else f"Fashion-MNIST IDX from {args.data_dir}",
        "train_per_class": args.train_per_class or "all",
        "test_images": int(len(data["y_test"])),
        "epochs_per_task": config(args, "dgmw", shape).epochs,
        "protocols": {},
    }
    for name in args.protocols:
        per_task = {"5x2": 2, "10x1": 1}[name]
        tasks = class_incremental(data["y_train"], per_task)
        methods, started = {}, time.perf_counter()
        print(f"protocol {name}: {tasks}", flush=True)
        for variant in args.variants:
            methods[variant] = run_dgm(args, variant, data, tasks, shape)
        methods["joint"] = run_joint(args, data, tasks, shape)
        methods["finetune"] = run_finetune(args, data, tasks, shape)
        entry = {"tasks": tasks, "methods": methods, "seconds": round(time.perf_counter() - started, 1)}
        if "dgmw" in methods:
            a = methods["dgmw"]["A_final"]
            entry["dgmw_vs_joint"] = a / methods["joint"]["A_final"]
            entry["dgmw_vs_finetune"] = a / max(methods["finetune"]["A_final"], 1e-9)
        for variant in args.variants:
            p = methods[variant]["parameters_per_version"]
            entry.setdefault("parameter_growth", {})[variant] = p[-1] / p[0]
        results["protocols"][name] = entry
        print(json.dumps({k: v for k, v in entry.items() if k not in ("methods", "tasks")}), flush=True)
        _write(results, out)  # after every protocol, so a long run that is stopped keeps what it did
    results["masked_step"] = [time_masked_step(args, shape, v) for v in args.variants]
    _write(results, out)
    plot(results, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return results


if __name__ == "__main__":
    main()
