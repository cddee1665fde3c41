"""Memory fidelity: does each generator head still draw its own class?

Before a task's images are deleted, a small classifier that shares nothing with the learner is trained
on them; it then labels the generator's samples of each of the task's classes. Fidelity of a class is
the fraction of its samples labelled as that class. A head that draws another class of its task (the
swap seen in issue 9), or draws nothing recognisable, scores low.
Old classes' generators are bit-identical after later tasks, so a class's fidelity never changes.

A one-class task has nothing to confuse its head with: a one-class judge says yes to anything, so
without more its fidelity is not measured (None). Given real images of classes the learner already
knows (`Learner.learn_task(reference=...)`, the service's holdouts), its judge learns the class against
them (`one_class_fidelity`): real images on both sides, so real-versus-generated cannot stand in for
class-versus-class. Such a judge is only as sure as the class is distinct: trained on 800 shirts against
200 images of each of six earlier classes it recognised 0.81-0.82 of real test shirts, and with fewer
shirts far less (0.39-0.42 at 200 against 200 each; benchmarks/probe_reference_ratio.py). So
- it sees about REFERENCE_RATIO images of its class for each image of a known class, the ratio it was
  first measured at: fewer known images for a small task (200 shirts then make 0.74-0.77 of real
  shirts recognised, not 0.4), fewer of its own for a large one (with 1600 shirts against 200 of each
  known class, a judge of a 10x1 learner at 2000 called 0.77-0.82 of the pullover head's samples
  shirt, so a shirt head that drew pullovers would have passed; at 4 to 1, 0.39-0.57);
- a fifth of the task's images are kept from it and measure it on real images of the class; the
  fidelity is the samples' rate over that real rate (capped at 1): 1 means the memory is recognised as
  often as real images are. A head that draws known classes scores about as low as their real images
  are called the new class (0.16-0.26, averaged over the six known classes, for shirt's judges: about
  0.2-0.35 relative);
- with fewer than `fidelity_min_images` images of the class (the fifth would be too few to measure the
  judge), or a judge that recognises less than MIN_REAL of them, the class is not measured (None).
Its limit: the judge has seen only real images, so a head that draws nothing recognisable is labelled
by whatever the judge does with such images, which may well be its majority class, the new one. A
multi-class judge shares the limit, but must give such images to one of its task's classes, so at
least one of them then scores low.

A multi-class task's judge sees only a few classes, so it can separate them by something as crude
as how much of the frame is bright, and generated images do not share such statistics exactly. Trained
on clean images at a constant lr (the recipe until 2026-12-06), 2 of 20 fresh judges of one learner's
coat/sandal task scored its sandal head 0.51-0.65, where an oracle trained on all ten classes gave
0.998, and the worst judge was right on only 0.78 of the real held-out coats and sandals: the job warned
about a head that was fine. The lr that decays to 0 is what cured it: on a learner trained the same way
today, 10 judges of that task at each recipe, constant lr: 2 below 0.8 (sandal down to 0.40, real
accuracy down to 0.73); decaying lr, clean or with Gaussian noise (sd 0.3) on the training images: every
class 1.00 on every judge, real accuracy 0.999 or more
(benchmarks/results/session21/probe_judge_fashion_5x2_2000_s2.json). The noise, added with the decay,
harmed five-class tasks: a judge of MNIST's five..nine trained on noisy images recognised only 0.65-0.78
of real test eights (0.99 clean) and called 0.62-0.76 of the generated eights eight, so every one of 10
judges warned, and through the service the gate held that version, whose classifier recognised 0.95 of
the real eights; clean, the same judges called 0.96-0.98 of them eight. On Fashion-MNIST's five-class
tasks, noise put 3 of 5 judges' pullover below 0.8, clean none (their worst class, coat, at 0.81;
session21/probe_judge_*). So a multi-class judge learns from clean images (TASK_NOISE). The one-class
judge keeps the noise it was measured with.
"""

from __future__ import annotations

import math

import torch

from dgm.config import LearnerConfig
from dgm.consolidate import train_epoch
from dgm.networks import Discriminator, Generator
from dgm.train import generate

SAMPLES = 400  # generated images scored per class
REFERENCE_RATIO = 4  # a one-class judge sees >= this many images of its class per image of a known class
CALIBRATION = 5  # ... and 1 in CALIBRATION of its class's images is kept to measure it on real images
MIN_REAL = 0.5  # a one-class judge that recognises less of those is no judge of the class (None)
WARN_BELOW = 0.8  # the job names any class whose fidelity is lower
NOISE = 0.3  # sd of the Gaussian noise on a one-class judge's training images (images lie in [-1, 1])
TASK_NOISE = 0.0  # ... and on a multi-class judge's: none (see the module's docstring)


def oracle(
    cfg: LearnerConfig,
    x: torch.Tensor,
    y: torch.Tensor,
    rng: torch.Generator,
    *,
    noise: float,
    decay: bool = True,
    width: int = 0,
) -> Discriminator:
    """A half-width classifier over local labels y in 0..k-1, trained on real images x (N, C, 32, 32)
    with Gaussian noise of sd `noise` added (NOISE for a one-class judge, TASK_NOISE for a multi-class
    one) and its lr falling linearly to 0 (decay=False: the constant lr before 2026-12-06; width > 0:
    that base width instead of half the critic's; both kept for benchmarks/probe_fidelity_judge.py)."""
    net = Discriminator(x.shape[1], width or max(8, cfg.ndf // 2), int(y.max()) + 1).to(x.device)
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
    """Fidelity of each of a multi-class task's classes (global ids class_ids; y holds them for x). A
    judge that would see one class scores None (see `one_class_fidelity`)."""
    if len(class_ids) < 2 or cfg.fidelity_epochs == 0:
        return [None] * len(class_ids)
    rng = torch.Generator(device=x.device).manual_seed(seed)
    local = torch.as_tensor(class_ids, device=y.device)
    y_local = (y[:, None] == local[None]).float().argmax(1)
    judge = oracle(cfg, x, y_local, rng, noise=TASK_NOISE)
    return [*score(judge, gen, class_ids, rng, cfg.truncation)]  # as list[float | None]


def one_class_fidelity(
    cfg: LearnerConfig,
    gen: Generator,
    x: torch.Tensor,
    class_id: int,
    x_ref: torch.Tensor,
    y_ref: list[int],
    seed: int,
) -> tuple[float | None, float | None]:
    """(fidelity, real rate) of a one-class task's class (global id class_id, its real images x), judged
    against real images x_ref of known classes (global ids y_ref): see the module's docstring. Fidelity
    None when it cannot be measured; real rate None when no judge was trained."""
    if cfg.fidelity_epochs == 0 or len(x) < cfg.fidelity_min_images or not len(y_ref):
        return None, None
    rng = torch.Generator(device=x.device).manual_seed(seed)
    judge, real = one_class_judge(cfg, x, x_ref, y_ref, rng)
    if real < MIN_REAL or real == 0:
        return None, real
    (samples,) = score(judge, gen, [class_id], rng, cfg.truncation)
    return min(1.0, samples / real), real


def one_class_judge(
    cfg: LearnerConfig, x: torch.Tensor, x_ref: torch.Tensor, y_ref: list[int], rng: torch.Generator
) -> tuple[Discriminator, float]:
    """A one-class task's judge (its class is output 0; known classes follow in id order) and the
    fraction of the class's real images kept from it (1 in CALIBRATION) that it recognises. It learns
    from at most REFERENCE_RATIO images of the class per image of the best-represented known class."""
    n_cal = max(1, len(x) // CALIBRATION)
    order = torch.randperm(len(x), generator=rng, device=x.device)
    ref_y = torch.as_tensor(y_ref, device=x.device)
    most = max(int((ref_y == c).sum()) for c in set(y_ref))  # the best-represented known class
    x_cal, x_fit = x[order[:n_cal]], x[order[n_cal:][: REFERENCE_RATIO * most]]
    per_known = math.ceil(len(x_fit) / REFERENCE_RATIO)
    xs, ys = [x_fit], [torch.zeros(len(x_fit), dtype=torch.long, device=x.device)]
    for i, c in enumerate(sorted(set(y_ref)), start=1):  # the first per_known of each, in the given order
        pick = torch.nonzero(ref_y == c).flatten()[:per_known]
        xs.append(x_ref[pick])
        ys.append(torch.full((len(pick),), i, dtype=torch.long, device=x.device))
    judge = oracle(cfg, torch.cat(xs), torch.cat(ys), rng, noise=NOISE)
    with torch.no_grad():
        real = float((judge.logits(x_cal).argmax(1) == 0).float().mean())
    return judge, real
