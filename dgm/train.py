"""One task of DGM training (METHOD.md §4, §6). Knows the networks, not the Learner or any service.

Per real batch: (a) cross-entropy steps of D's class head on real + replayed chunks, (b) one WGAN-GP
critic step on the current task, (c) one generator step on -critic + lambda_t * sparsity (+ CE on fakes),
with reserved weights' gradients zeroed and the mask-embedding gradients compensated.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dgm import masks
from dgm.config import LearnerConfig
from dgm.errors import TrainingCancelled
from dgm.networks import Discriminator, Generator

GEN_BATCH = 256


@dataclass
class Progress:
    step: int
    total: int
    epoch: int
    epochs: int
    losses: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def eta_seconds(self) -> float | None:
        return self.seconds / self.step * (self.total - self.step) if self.step else None


ProgressFn = Callable[[Progress], None]


def autocast(device: torch.device, cfg: LearnerConfig):
    if device.type == "cuda" and cfg.amp:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def noise_like(n: int, nz: int, rng: torch.Generator, device: torch.device, truncation: float = 0.0):
    """(n, nz) standard normal noise; truncation > 0: each entry conditioned on |z| <= truncation, drawn
    by the inverse CDF of one uniform draw."""
    if not truncation:
        return torch.randn(n, nz, generator=rng, device=device)
    lo, hi = torch.special.ndtr(torch.tensor([-truncation, truncation], dtype=torch.float64)).tolist()
    u = torch.rand(n, nz, generator=rng, device=device, dtype=torch.float64)
    return torch.special.ndtri(lo + u * (hi - lo)).float()


@torch.no_grad()
def generate(
    gen: Generator, classes: list[int], per_class: int, rng: torch.Generator, truncation: float = 0.0
) -> torch.Tensor:
    """per_class images of each class, each from its own task's binary mask; G in eval mode (truncation:
    see LearnerConfig.truncation)."""
    was_training = gen.training
    gen.eval()
    device = gen.weights[0].device
    out = []
    for c in classes:
        task = gen.class_task[c]
        for start in range(0, per_class, GEN_BATCH):
            n = min(GEN_BATCH, per_class - start)
            noise = noise_like(n, gen.nz, rng, device, truncation)
            out.append(gen(noise, torch.full((n,), c, device=device), task).float())
    gen.train(was_training)
    return torch.cat(out) if out else torch.empty(0, gen.nc, 32, 32, device=device)


def gradient_penalty(
    disc: Discriminator, real: torch.Tensor, fake: torch.Tensor, y: torch.Tensor, rng: torch.Generator
) -> torch.Tensor:
    """(|grad_x D(x_hat, y)| - 1)^2 on per-sample interpolates of real and fake images of label y."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, generator=rng, device=real.device)
    mix = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(disc.score(mix, y).sum(), mix, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


@torch.no_grad()
def recalibrate_bn(disc: Discriminator, x: torch.Tensor, batch: int) -> None:
    """Re-estimate D's BatchNorm statistics on classification data only.

    During training the critic also sees fakes and gradient-penalty interpolates, whose statistics are
    not those of the images the classifier will serve.
    """
    disc.train()
    with fresh_bn_stats(disc):
        for start in range(0, len(x), batch):
            disc.trunk(x[start : start + batch])
    disc.eval()


@contextlib.contextmanager
def fresh_bn_stats(module: nn.Module):
    """Inside: module's BatchNorm running statistics restart as a cumulative average of the batches run."""
    bns = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    try:
        yield
    finally:
        for bn in bns:
            bn.momentum = 0.1


def budget(cfg: LearnerConfig, n: int, classes: int) -> tuple[int, int]:
    """(epochs, batches per epoch) for an upload of n images of `classes` classes: at least cfg.epochs
    passes and max(cfg.steps, cfg.steps_per_class * classes) steps.

    Counting in steps gives a small upload as many generator updates as a large one, and a task of many
    classes as many per class as a task of few; the mask anneal still runs per epoch (METHOD.md §3.3),
    over however many epochs the budget makes.
    """
    per_epoch = math.ceil(n / cfg.batch_size)
    floor = max(cfg.steps, cfg.steps_per_class * classes)
    return max(cfg.epochs, math.ceil(floor / per_epoch)), per_epoch


class TaskTrainer:
    """Trains task `task` of `gen` with a fresh `disc` on real images x (N, C, 32, 32) and labels y (N,).

    The critic's class head is trained on real + replay only if `cfg.trains_class_head`.
    """

    def __init__(
        self, cfg: LearnerConfig, gen: Generator, disc: Discriminator, task: int, rng: torch.Generator
    ) -> None:
        self.cfg, self.gen, self.disc, self.task, self.rng = cfg, gen, disc, task, rng
        betas = (cfg.beta1, 0.999)
        self.opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=betas)
        embedding = {id(e) for e in gen.embedding}
        self.g_params = params = gen.trainable_parameters(task)
        groups: list[dict[str, Any]] = [
            {"params": [p for p in params if id(p) not in embedding]},
            {"params": [p for p in params if id(p) in embedding], "decays": False},
        ]
        self.opt_g = torch.optim.Adam(groups, lr=cfg.lr, betas=betas)
        device = gen.weights[0].device
        self.multipliers = [m.to(device) for m in gen.gradient_multipliers()]
        # lambda_t grows with the network (METHOD.md §3.2): lambda * channels now / channels at start
        self.lam_t = cfg.lam * sum(gen.widths) / sum(gen.initial_widths)
        # cfg.g_ema: a running average of what the generator step changes, except the mask embedding,
        # whose binarised end state decides what the task reserves
        heads = [gen.heads[c] for c in gen.task_class_ids(task)]
        self.averaged = [*gen.weights, *gen.bns[task].parameters(), *heads] if cfg.g_ema else []
        self.average = [p.detach().clone() for p in self.averaged]

    def run(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        replay_x: torch.Tensor,
        replay_y: torch.Tensor,
        progress: ProgressFn | None,
        should_stop: Callable[[], bool] | None,
    ) -> dict[str, float]:
        cfg, b = self.cfg, self.cfg.batch_size
        n_new = len(torch.unique(y))
        epochs, steps = budget(cfg, len(x), n_new)
        total = steps * epochs
        n_old = len(torch.unique(replay_y)) if len(replay_y) else 0
        replay_per_batch = round(b * n_old / n_new)
        report_every = max(1, total // 100)
        started, losses, step = time.perf_counter(), {}, 0
        for epoch in range(epochs):
            perm = torch.randperm(len(x), generator=self.rng, device=x.device)
            for i in range(steps):
                if should_stop is not None and should_stop():
                    raise TrainingCancelled(f"cancelled at step {step} of {total}")
                idx = perm[i * b : (i + 1) * b]
                s, s_e = masks.anneal_scale(cfg.s_max, epoch, epochs, i / steps)
                if cfg.gan_lr_decay:
                    self.set_lr(cfg.lr * (1 - step / total))
                losses = self.step(x[idx], y[idx], replay_x, replay_y, replay_per_batch, s, s_e)
                step += 1
                if progress is not None and (step % report_every == 0 or step == total):
                    progress(Progress(step, total, epoch, epochs, losses, time.perf_counter() - started))
        if self.average:
            self.use_average(torch.unique(y))
        if self.cfg.trains_class_head:
            recalibrate_bn(self.disc, torch.cat([x, replay_x]), 256)
        return losses

    def set_lr(self, lr: float) -> None:
        """The critic's lr and the generator's, except where a group says it does not decay (the mask
        embedding)."""
        for group in [*self.opt_d.param_groups, *self.opt_g.param_groups]:
            if group.get("decays", True):
                group["lr"] = lr

    @torch.no_grad()
    def use_average(self, classes: torch.Tensor, batches: int = 16) -> None:
        """Load the averaged weights, then re-estimate the task's BatchNorm statistics for them: the
        running statistics were gathered on the last steps' weights. Samples use the task's binary mask."""
        for p, a in zip(self.averaged, self.average, strict=True):
            p.copy_(a)
        b, device, was_training = self.cfg.batch_size, classes.device, self.gen.training
        self.gen.train()
        with fresh_bn_stats(self.gen.bns[self.task]):
            for _ in range(batches):
                noise = torch.randn(b, self.gen.nz, generator=self.rng, device=device)
                pick = torch.randint(len(classes), (b,), generator=self.rng, device=device)
                with autocast(device, self.cfg):
                    self.gen(noise, classes[pick], self.task)
        self.gen.train(was_training)

    def step(self, xb, yb, replay_x, replay_y, replay_per_batch, s, s_e) -> dict[str, float]:
        out = {}
        if self.cfg.trains_class_head:
            out["ce"] = self.classify_steps(xb, yb, replay_x, replay_y, replay_per_batch)
        noise = torch.randn(len(xb), self.gen.nz, generator=self.rng, device=xb.device)
        with autocast(xb.device, self.cfg):
            fake = self.gen(noise, yb, self.task, s)
        critic = self.critic_step(xb, fake.detach().float(), yb)
        g_losses = self.generator_step(fake, yb, s, s_e)
        return {**out, **critic, **g_losses}

    def classify_steps(self, xb, yb, replay_x, replay_y, replay_per_batch) -> float:
        """(a) min CE(D_class(x), y) over real + replay, shuffled into chunks of one batch each (the
        first cfg.classify_chunks of them, if set)."""
        if replay_per_batch and len(replay_x):
            pick = torch.randint(len(replay_x), (replay_per_batch,), generator=self.rng, device=xb.device)
            xa, ya = torch.cat([xb, replay_x[pick]]), torch.cat([yb, replay_y[pick]])
            order = torch.randperm(len(xa), generator=self.rng, device=xb.device)
            xa, ya = xa[order], ya[order]
        else:
            xa, ya = xb, yb
        total = 0.0
        chunks = list(zip(xa.split(self.cfg.batch_size), ya.split(self.cfg.batch_size), strict=True))
        chunks = chunks[: self.cfg.classify_chunks or None]
        for xc, yc in chunks:
            with autocast(xb.device, self.cfg):
                loss = F.cross_entropy(self.disc.logits(xc).float(), yc)
            self.opt_d.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_d.step()
            total += float(loss.detach())
        return total / len(chunks)

    def critic_step(self, xb: torch.Tensor, fake: torch.Tensor, yb: torch.Tensor) -> dict[str, float]:
        """(b) min -D(x, y) + D(G(z, y), y) + lambda_GP * (|grad D(x_hat, y)| - 1)^2, current task only."""
        with autocast(xb.device, self.cfg):
            wdist = self.disc.score(xb, yb).float().mean() - self.disc.score(fake, yb).float().mean()
        gp = gradient_penalty(self.disc, xb, fake, yb, self.rng)
        loss = -wdist + self.cfg.lam_gp * gp
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        return {"wasserstein": float(wdist.detach()), "gp": float(gp.detach())}

    def generator_step(self, fake: torch.Tensor, yb: torch.Tensor, s: float, s_e: float) -> dict[str, float]:
        """(c) min -lambda_adv D(G(z, y), y) + lambda_t R(mask) [+ lam_aux CE(D_class(G(z)), y)], reserved
        grads 0."""
        with autocast(fake.device, self.cfg):
            adv = -self.disc.score(fake, yb).float().mean()
            aux = F.cross_entropy(self.disc.logits(fake).float(), yb) if self.cfg.aux_g else adv.new_zeros(())
        reg = self.gen.sparsity_loss(s)
        loss = self.cfg.lam_adv * adv + self.lam_t * reg + self.cfg.lam_aux * aux
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.gen.block_gradients(self.multipliers)
        self.gen.compensate(s, s_e)
        nn.utils.clip_grad_norm_(self.g_params, self.cfg.grad_clip_g)
        self.opt_g.step()
        for a, p in zip(self.average, self.averaged, strict=True):  # empty unless cfg.g_ema
            a.lerp_(p.detach(), 1 - self.cfg.g_ema)
        return {"g_adv": float(adv.detach()), "g_aux": float(aux.detach()), "sparsity": float(reg.detach())}
