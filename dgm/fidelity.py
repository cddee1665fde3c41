"""Memory fidelity: does each generator head still draw its own class?

Before a task's images are deleted, a small classifier that shares nothing with the learner is trained
on them; it then labels the generator's samples of each of the task's classes. Fidelity of a class is
the fraction of its samples labelled as that class. A head that draws another class of its task (the
swap seen in issue 9), or draws nothing recognisable, scores low. A one-class task has nothing to
confuse its head with, so its fidelity is not measured (None): a one-class oracle says yes to anything.
Old classes' generators are bit-identical after later tasks, so a class's fidelity never changes.
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


def oracle(cfg: LearnerConfig, x: torch.Tensor, y: torch.Tensor, rng: torch.Generator) -> Discriminator:
    """A half-width classifier over local labels y in 0..k-1, trained on real images x (N, C, 32, 32)."""
    net = Discriminator(x.shape[1], max(8, cfg.ndf // 2), int(y.max()) + 1).to(x.device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.5, 0.999))
    net.train()
    per_epoch = math.ceil(len(x) / 64)
    for _ in range(max(cfg.fidelity_epochs, math.ceil(cfg.fidelity_steps / per_epoch))):
        train_epoch(cfg, net, opt, x, y, 64, rng)
    return net.eval()


@torch.no_grad()
def score(net: Discriminator, gen: Generator, class_ids: list[int], rng: torch.Generator) -> list[float]:
    """For the i-th class id: fraction of its SAMPLES generated images that `net` labels i."""
    out = []
    for i, c in enumerate(class_ids):
        pred = net.logits(generate(gen, [c], SAMPLES, rng)).argmax(1)
        out.append(float((pred == i).float().mean()))
    return out


def task_fidelity(
    cfg: LearnerConfig, gen: Generator, x: torch.Tensor, y: torch.Tensor, class_ids: list[int], seed: int
) -> list[float | None]:
    """Fidelity of each of the task's classes (global ids class_ids; y holds those ids for x)."""
    if len(class_ids) < 2 or cfg.fidelity_epochs == 0:
        return [None] * len(class_ids)
    rng = torch.Generator(device=x.device).manual_seed(seed)
    local = torch.as_tensor(class_ids, device=y.device)
    y_local = (y[:, None] == local[None]).float().argmax(1)
    return [*score(oracle(cfg, x, y_local, rng), gen, class_ids, rng)]  # as list[float | None]
