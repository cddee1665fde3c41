"""The classifier that serves, trained at the end of every task on the generator's replay of every class.

The official code serves the critic's class head, which is trained beside the critic on real images of
the newest classes and on generated images of the old ones. On multi-class uploads it learned the
shortcut "real image: newest class": after a few tasks real images of old classes were almost all
predicted as the newest class while their generated samples were still recognisable (issue 9). Here
every class, the newest included, is shown only as generated images from its own frozen task mask, so
"real or generated" carries no label. Each epoch draws a fresh replay set, so no sample is reused.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from dgm.config import LearnerConfig
from dgm.networks import Discriminator, Generator
from dgm.train import autocast, generate

SHIFT = 2  # random translation, in pixels at 32x32, applied per batch: generated images are centred


def consolidate(
    cfg: LearnerConfig,
    gen: Generator,
    n_classes: int,
    rng: torch.Generator,
    real: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Discriminator:
    """A fresh classifier over classes 0..n_classes-1, trained on replay (plus `real` (x, y) if given)."""
    device = gen.weights[0].device
    clf = Discriminator(gen.nc, cfg.classifier_ndf or cfg.ndf, n_classes).to(device)
    opt = torch.optim.Adam(clf.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    per_class = cfg.consolidate_per_class
    labels = torch.arange(n_classes, device=device).repeat_interleave(per_class)
    examples = n_classes * per_class + (len(real[0]) if real is not None else 0)
    steps = cfg.consolidate_epochs * math.ceil(examples / cfg.batch_size)
    decay = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1 - i / steps if cfg.consolidate_lr_decay else 1)
    clf.train()
    for _ in range(cfg.consolidate_epochs):
        x, y = generate(gen, list(range(n_classes)), per_class, rng, cfg.truncation), labels
        if real is not None:
            x, y = torch.cat([x, real[0]]), torch.cat([y, real[1]])
        train_epoch(cfg, clf, opt, x, y, cfg.batch_size, rng, decay, mixup=cfg.consolidate_mixup)
    return clf.eval()


def train_epoch(
    cfg: LearnerConfig,
    net: Discriminator,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    batch: int,
    rng: torch.Generator,
    schedule: torch.optim.lr_scheduler.LRScheduler | None = None,
    mixup: float = 0.0,
    noise: float = 0.0,
) -> None:
    """One shuffled pass of cross-entropy on randomly shifted x (the schedule, if any, steps per batch;
    mixup > 0: each batch blended with a shuffled copy of itself; noise > 0: Gaussian noise of that sd
    added to each batch, clamped to [-1, 1]); shared with dgm.fidelity's oracle."""
    if mixup:  # the blend weights' own stream; drawn only here, so mixup 0 leaves rng's stream as it was
        blend = np.random.default_rng(int(torch.randint(2**31, (1,), generator=rng, device=rng.device)))
    for idx in torch.randperm(len(x), generator=rng, device=x.device).split(batch):
        xb, yb = shift(x[idx], rng), y[idx]
        if noise:
            xb = (xb + noise * torch.randn(xb.shape, generator=rng, device=x.device)).clamp(-1, 1)
        if mixup:
            w = float(blend.beta(mixup, mixup))
            other = torch.randperm(len(idx), generator=rng, device=x.device)
            with autocast(x.device, cfg):
                logits = net.logits(w * xb + (1 - w) * xb[other]).float()
            loss = w * F.cross_entropy(logits, yb) + (1 - w) * F.cross_entropy(logits, yb[other])
        else:
            with autocast(x.device, cfg):
                loss = F.cross_entropy(net.logits(xb).float(), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if schedule is not None:
            schedule.step()


def shift(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """x (N, C, 32, 32) translated by up to SHIFT pixels in each direction, edges replicated."""
    dx, dy = (int(v) for v in torch.randint(-SHIFT, SHIFT + 1, (2,), generator=rng, device=rng.device))
    if dx == dy == 0:
        return x
    h, w = x.shape[-2:]
    padded = F.pad(x, (SHIFT, SHIFT, SHIFT, SHIFT), mode="replicate")
    return padded[..., SHIFT + dy : SHIFT + dy + h, SHIFT + dx : SHIFT + dx + w]
