"""Hyper-parameters: one frozen dataclass, written into every checkpoint so it rebuilds its own network.

Defaults follow METHOD.md §8.1 (MNIST DGMw/DGMa) where they exist; the presets only shrink widths and
budgets so the same code runs in seconds (tests), minutes (CPU benchmark) or at paper scale (GPU).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from dgm.errors import DGMInputError

Variant = Literal["dgmw", "dgma"]
ClassifierKind = Literal["consolidated", "critic_head"]


@dataclass(frozen=True)
class LearnerConfig:
    image_shape: tuple[int, int, int] = (1, 32, 32)  # (channels, height, width) of user images
    variant: Variant = "dgmw"
    nz: int = 128  # latent size; the first `max_classes` entries carry the one-hot label
    max_classes: int = 64
    ngf: int = 6  # generator base width: channels (4*ngf, 2*ngf, ngf); DGMw 6, DGMa 20 in the paper
    ndf: int = 32  # discriminator base width: channels (ndf, 2*ndf, 4*ndf)
    epochs: int = 101  # passes over the upload per task (a floor; `steps` is the other)
    steps: int = 0  # floor on generator steps per task, whatever the upload's size (0: epochs only)
    # ... raised to this many steps per class of the task, so a task of many classes gets as many steps
    # per class as a task of few (0: `steps` alone)
    steps_per_class: int = 0
    batch_size: int = 64
    lr: float = 2e-3  # Adam lr for D and G (MNIST default)
    # the lr of the critic and of the generator's weights, BatchNorm affines and heads falls linearly to 0
    # over the task's steps (the mask embedding keeps cfg.lr, so what a task reserves is learnt as
    # before). Off: a constant lr, as METHOD.md
    gan_lr_decay: bool = False
    beta1: float = 0.5
    s_max: float = 1e4  # mask sigmoid scale at the end of the anneal (DGMa paper default 1e5)
    lam: float = 0.08  # sparsity weight lambda (DGMa paper default 0.01)
    # A new task's mask embedding starts at +reuse_start where earlier tasks reserved the weight (unit)
    # and -reuse_start where it is free: reusing frozen capacity is the default and costs nothing, a
    # free weight is claimed only when the task's gradient pulls it up. 0: the official all-zero start.
    reuse_start: float = 0.05
    # a task after the first may claim at most claim_cap x a layer's first mask size of free units
    # (DGMa) or weights (DGMw) per layer; reserved ones it reuses freely. Bounds the growth that
    # follows the claim (dgm/expansion.py). 0: no cap, as METHOD.md
    claim_cap: float = 0.0
    # DGMw rounds a task's claim up to whole output channels, so each expansion leaves some free weights
    # above the level the rule keeps. On: that surplus pays the next claims before the network grows
    # again, so free capacity stays constant instead of drifting up (off: METHOD.md section 5 as written)
    carry_surplus: bool = False
    # Slot k of the latent's one-hot is 1 only for the class coded k and 0 for every other class, so the
    # conv1 weights fed by the open task's own slots are read by no finished task. On: they train even
    # where an earlier task reserved the weight (DGMw) or its unit (DGMa). Under DGMa that gives a new
    # class a learned input to every reused conv1 unit instead of the random initial weights a reserved
    # unit froze; under DGMw those rows are free anyway unless a forgotten class's code is reused.
    # Earlier tasks' samples stay bit-identical. Off: every reserved weight frozen, as METHOD.md
    own_code_rows: bool = False
    # the generator this task leaves behind is an exponential moving average of its trained weights,
    # heads and BatchNorm affines over the task's steps (decay per step; 0: the last step's weights, as
    # METHOD.md). Training itself is unchanged; reserved weights get no update, so their average is
    # themselves bit for bit
    g_ema: float = 0.0
    lam_gp: float = 1.0  # WGAN-GP weight
    lam_adv: float = 1.0
    aux_g: bool = False  # CE on fakes through the critic's class head in G's loss (official: ImageNet only)
    lam_aux: float = 1.0  # ... and its weight there (METHOD.md: 1)
    # Adam steps on the critic's class head per iteration: the real batch plus B replayed samples per past
    # task, shuffled, in chunks of B. 0: one step per chunk, t+1 at task t (METHOD.md §4 (a)); k > 0: the
    # first k chunks only, so the step costs the same at every task (each chunk keeps the class mix)
    classify_chunks: int = 0
    # the memory's latent noise (replay, consolidation, fidelity, samples) is drawn from N(0, 1) truncated
    # to [-truncation, truncation], as BigGAN's truncation trick: fewer atypical samples, less variety.
    # Training the generator still draws untruncated noise. 0: untruncated (METHOD.md)
    truncation: float = 0.0
    projection: bool = True  # conditional (projection) critic: binds each head to its own class
    # the critic also scores the batch's within-class deviation of its features (ProGAN's minibatch
    # standard deviation, per class), a reward for variety within each class. Off: as METHOD.md
    critic_batch_std: bool = False
    classifier: ClassifierKind = "consolidated"  # what serves (dgm/consolidate.py); "critic_head": official
    classifier_ndf: int = 0  # the consolidated classifier's base width (0: ndf, the critic's)
    consolidate_per_class: int = 800  # generated images per class per consolidation epoch
    consolidate_epochs: int = 4
    # the classifier's lr falls linearly to 0 over the consolidation (off: constant lr, as before; on in
    # `small`, see there)
    consolidate_lr_decay: bool = False
    # mixup in consolidation: each batch is blended with a shuffled copy of itself, weight ~ Beta(a, a),
    # and the loss blends the two labels alike (0: off)
    consolidate_mixup: float = 0.0
    consolidate_real: bool = False  # add the task's real images to consolidation (teaches real vs fake)
    fidelity_epochs: int = 3  # the independent per-task classifier that scores the memory (0: off)
    fidelity_steps: int = 300  # ... and its floor on optimizer steps (a small task is a few batches)
    # a one-class task's fidelity needs this many images of its class: a fifth of them measure its judge
    # on real images (dgm/fidelity.py one_class_fidelity); fewer give too noisy a measure (None)
    fidelity_min_images: int = 200
    replay_per_class: int = 2000  # cap on replayed samples per old class (paper: the task's size)
    min_samples_per_class: int = 8
    grad_clip_g: float = 1e4
    amp: bool = True  # bf16 autocast on CUDA; ignored on CPU
    extra: tuple[tuple[str, Any], ...] = field(default=())  # reserved for forward compatibility

    def __post_init__(self) -> None:
        c, h, w = self.image_shape
        problems = []
        if c not in (1, 3):
            problems.append(f"image_shape channels must be 1 or 3, got {c}")
        if not (4 <= h <= 512 and 4 <= w <= 512):
            problems.append(f"image height and width must be in 4..512, got {h}x{w}")
        if self.variant not in ("dgmw", "dgma"):
            problems.append(f"variant must be 'dgmw' or 'dgma', got {self.variant!r}")
        if self.max_classes < 1 or self.nz <= self.max_classes:
            problems.append(f"nz ({self.nz}) must exceed max_classes ({self.max_classes}) so noise remains")
        if self.classifier not in ("consolidated", "critic_head"):
            problems.append(f"classifier must be 'consolidated' or 'critic_head', got {self.classifier!r}")
        positive = ("ngf", "ndf", "epochs", "batch_size", "replay_per_class", "min_samples_per_class")
        for name in (*positive, "consolidate_per_class", "consolidate_epochs"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        if self.fidelity_min_images < 5:  # a fifth of them, at least one image, measures the judge
            problems.append(f"fidelity_min_images must be >= 5, got {self.fidelity_min_images}")
        counts = ("steps", "steps_per_class", "fidelity_epochs", "fidelity_steps", "classifier_ndf")
        for name in (*counts, "classify_chunks"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0")
        for name in ("lr", "s_max"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0")
        if min(self.lam, self.lam_gp, self.lam_aux, self.reuse_start, self.consolidate_mixup) < 0:
            problems.append("lam, lam_gp, lam_aux, reuse_start and consolidate_mixup must be >= 0")
        if not 0 <= self.g_ema < 1:
            problems.append(f"g_ema must be in [0, 1), got {self.g_ema}")
        if not 0 <= self.truncation <= 10:  # NaN fails too; beyond 10 nothing is cut (P(|z| > 10) ~ 1e-23)
            problems.append(f"truncation must be in 0..10 (0: off), got {self.truncation}")
        if not 0 <= self.claim_cap <= 1:
            problems.append(f"claim_cap must be in 0..1, got {self.claim_cap}")
        if problems:
            raise DGMInputError("invalid learner config: " + "; ".join(problems))

    @property
    def trains_class_head(self) -> bool:
        """The critic's class head is trained only where something reads it: the official classifier
        (`classifier="critic_head"`) or the generator's aux CE (`aux_g`)."""
        return self.aux_g or self.classifier == "critic_head"

    @classmethod
    def preset(cls, name: str = "small", **overrides: Any) -> LearnerConfig:
        """A named size: `tiny` (tests), `small` (CPU, minutes a task), `paper` (METHOD.md §8.1)."""
        if name not in PRESETS:
            raise DGMInputError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        variant = overrides.get("variant", "dgmw")
        base = {**PRESETS[name], **(DGMA_PRESETS.get(name, {}) if variant == "dgma" else {})}
        base.update(overrides)
        return cls.from_dict(base)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LearnerConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise DGMInputError(f"unknown hyper-parameter(s) {unknown}; known: {sorted(known - {'extra'})}")
        values = dict(values)
        if "image_shape" in values:
            shape = tuple(int(v) for v in values["image_shape"])
            if len(shape) != 3:
                raise DGMInputError(f"image_shape must be (channels, height, width), got {shape}")
            values["image_shape"] = shape
        try:
            return cls(**values)
        except TypeError as exc:  # wrong value types surface here
            raise DGMInputError(f"invalid learner config: {exc}") from exc

    def replace(self, **changes: Any) -> LearnerConfig:
        return self.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["image_shape"] = list(self.image_shape)
        out["extra"] = [list(kv) for kv in self.extra]
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LearnerConfig:
        values = json.loads(text)
        values["extra"] = tuple(tuple(kv) for kv in values.get("extra", []))
        return cls.from_dict(values)


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        nz=24,
        max_classes=16,
        ngf=4,
        ndf=8,
        epochs=2,  # tests: seconds a task. Retention on real data needs more (tests/dgm/test_retention.py)
        batch_size=32,
        consolidate_per_class=64,
        consolidate_epochs=2,
        fidelity_steps=60,
        lr=2e-3,
        replay_per_class=64,
        min_samples_per_class=4,
    ),
    "small": dict(
        nz=128,
        max_classes=64,
        # issue 9: base width 16 against 8, DGMw, Fashion-MNIST 5x2 at 800/class, each seed paired on one
        # machine: worst old class 0.617/0.629/0.583 against 0.485/0.611/0.483, final A +0.004/+0.008/
        # +0.006; 156 s against 139 s for a 1600-image task (README, lever ngf8). DGMa too since 2026-12-07
        ngf=16,
        ndf=32,
        epochs=1,
        # issue 9: 135 steps (5 epochs of a 1600-image task) left samples unrecognisable; 500 kept 0.759
        # final A on Fashion-MNIST 5x2 (800/class, 3 seeds), 1000 keeps 0.792 (higher on every seed),
        # at about twice the seconds a task (benchmarks/results/accuracy.json, lever steps_1000)
        steps=1000,
        # issue 9: ... and 500 a class, so a task of five classes trains 2500 steps, not the 1000 that a
        # two-class task gets. Two tasks of five, against 1000, paired by seed: MNIST at 700 final A
        # 0.955/0.956 against 0.935/0.915, the generated eights recognisable (oracle 0.95/0.99 against
        # 0.82/0.91); Fashion-MNIST at 800 0.819/0.827 against 0.829/0.810 (README, lever
        # no_steps_per_class). Tasks of one or two classes are unchanged
        steps_per_class=500,
        batch_size=64,
        lr=1e-3,
        lam=0.05,
        replay_per_class=1500,
        # issue 9: the classifier alone, retrained on five saved generators (Fashion-MNIST, 10x1 and 5x2,
        # two classifier seeds each): lr decay +0.012 final A on every one, with 8 epochs +0.019 on every
        # one, worst class 0.50 -> 0.54 on average (benchmarks/results/probes/classifier_probe.json)
        consolidate_epochs=8,
        consolidate_lr_decay=True,
        # issue 9: DGMw's generator grew 2.005x over ten tasks (Fashion-MNIST 10x1, 800/class, 3 seeds),
        # about a sixth of it whole-channel rounding; see README for the growth with the surplus carried
        carry_surplus=True,
        # g_ema stays 0: with the average, 5x2 at 800 ended 0.815 +- 0.003 on three seeds, but the one
        # same-machine pair (seed 0) ended lower with it (0.814 against 0.823, worst old class 0.455
        # against 0.485); README, lever g_ema
    ),
    "paper": dict(
        nz=128, max_classes=64, ngf=6, ndf=32, epochs=101, batch_size=64, lr=2e-3, replay_per_class=6000
    ),
}
# hyper-parameters that change nothing for a variant (benchmarks ignore them when they compare configs):
# DGMa grows one channel per claimed unit, so no rounding surplus is ever carried
INERT: dict[str, tuple[str, ...]] = {"dgma": ("carry_surplus",)}
# what a preset changes when variant="dgma"
DGMA_PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(ngf=20, s_max=1e5, lam=0.01),  # METHOD.md section 8.1, cfg_mnist_dgma.yml
    # issue 9: uncapped, DGMa's tasks claimed 56-94% of each layer's units at 1000 steps and its generator
    # grew 8.77x over ten tasks; no sparsity weight up to 0.5 bounded it. A later task may claim 10% of a
    # layer's first width (6, 3, 1 units at base width 16), so ten tasks grow it about 1.7x (README)
    # base width 16, as DGMw's (8 until 2026-12-07): on Fashion-MNIST 5x2 at 800 it raised final A on three
    # same-machine pairs (+0.057/+0.029/+0.019), 10x1 at 800 is even (0.834 against 0.833), growth 1.70x
    # against 1.58x over ten tasks; on MNIST 5x2 at 700 (3 seeds) final A 0.960/0.953/0.951 against
    # 0.938/0.938/0.788 at 8, where seed 2 lost real threes (0.00) and twos (0.26); worst old class
    # 0.933/0.907/0.913 (README, DGMa's lever ngf8)
    # the per-class step floor was measured on DGMw only (two tasks of five classes): DGMa keeps the
    # 1000-step floor whatever a task's classes until it is measured too
    "small": dict(claim_cap=0.1, steps_per_class=0),
}
