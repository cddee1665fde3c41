"""Memory fidelity: does each generator head still draw its own class?

Before a task's images are deleted, a small classifier that shares nothing with the learner is trained
on them; it then labels the generator's samples of each of the task's classes. Fidelity of a class is
the fraction of its samples labelled as that class. A head that draws another class of its task (the
swap seen in issue 9), or draws nothing recognisable, scores low. A one-class task has nothing to
confuse its head with, so its fidelity is not measured (None): a one-class oracle says yes to anything.
Given real images of classes the learner already knows (`Learner.learn_task(reference=...)`), a
one-class task's judge learns its class against them instead (benchmarks/probe_one_class_judge.py:
under such judges, earlier heads' samples were called the new class about as often as earlier real
images; the samples behave as real images do).
Old classes' generators are bit-identical after later tasks, so a class's fidelity never changes.

The judge sees only two or three classes, so it can separate them by something as crude as how much
of the frame is bright, and generated images do not share such statistics exactly. Trained on clean
images at a constant lr (the recipe until 2026-12-06), 2 of 20 fresh judges of one learner's
coat/sandal task scored its sandal head 0.51-0.65, where an oracle trained on all ten classes gave
0.998, and the worst judge was right on only 0.78 of the real held-out coats and sandals: the job
warned about a head that was fine. With noise on the judge's training images and an lr that decays to
0, no judge of any of that learner's five tasks scored a class below 0.96, and every judge was right on
at least 0.968 of the real held-out images (benchmarks/probe_fidelity_judge.py,
benchmarks/results/probes/fidelity_judge_5x2_2000_s2.json).
"""

from __future__ import annotations

import math

import torch

from dgm.config import LearnerConfig
from dgm.consolidate import train_epoch
from dgm.networks import Discriminator, Generator
from dgm.train import generate

SAMPLES = 400  # generated images scored per class
WARN_BELOW = 0.8  # the job names any class whose fidelity is lower
NOISE = 0.3  # sd of the Gaussian noise on the judge's training images (images lie in [-1, 1])


def oracle(
    cfg: LearnerConfig,
    x: torch.Tensor,
    y: torch.Tensor,
    rng: torch.Generator,
    noise: float = NOISE,
    decay: bool = True,
) -> Discriminator:
    """A half-width classifier over local labels y in 0..k-1, trained on real images x (N, C, 32, 32)
    with noise added and its lr falling linearly to 0 (noise=0, decay=False: the recipe before
    2026-12-06, kept for benchmarks/probe_fidelity_judge.py)."""
    net = Discriminator(x.shape[1], max(8, cfg.ndf // 2), int(y.max()) + 1).to(x.device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.5, 0.999))
    per_epoch = math.ceil(len(x) / 64)
    epochs = max(cfg.fidelity_epochs, math.ceil(cfg.fidelity_steps / per_epoch))
    steps = epochs * per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: max(0.0, 1 - i / steps)) if decay else None
    net.train()
    for _ in range(epochs):
        train_epoch(cfg, net, opt, x, y, 64, rng, schedule, noise=noise)
    return net.eval()


@torch.no_grad()
def score(
    net: Discriminator, gen: Generator, class_ids: list[int], rng: torch.Generator, truncation: float = 0.0
) -> list[float]:
    """For the i-th class id: fraction of its SAMPLES generated images that `net` labels i."""
    out = []
    for i, c in enumerate(class_ids):
        pred = net.logits(generate(gen, [c], SAMPLES, rng, truncation)).argmax(1)
        out.append(float((pred == i).float().mean()))
    return out


def task_fidelity(
    cfg: LearnerConfig, gen: Generator, x: torch.Tensor, y: torch.Tensor, class_ids: list[int], seed: int
) -> list[float | None]:
    """Fidelity of each of the task's classes (global ids class_ids). y holds global ids for x: the
    task's classes, plus, for a one-class task, any known classes given as a reference, which the judge
    learns too but whose samples it does not score. A judge that would see one class scores None."""
    others = sorted(set(torch.unique(y).tolist()) - set(class_ids))
    if len(class_ids) + len(others) < 2 or cfg.fidelity_epochs == 0:
        return [None] * len(class_ids)
    rng = torch.Generator(device=x.device).manual_seed(seed)
    local = torch.as_tensor([*class_ids, *others], device=y.device)
    y_local = (y[:, None] == local[None]).float().argmax(1)
    judge = oracle(cfg, x, y_local, rng)
    return [*score(judge, gen, class_ids, rng, cfg.truncation)]  # as list[float | None]
